"""HTTP helpers shared by the inference routes: SSE framing, unbuffered stream headers, and cancelling a
generation when its client goes away.

* Streaming: Starlette cancels a `StreamingResponse`'s body iterator when the client disconnects; body
  iterators call `handle.cancel()` in a `finally` so the request leaves the batch at the next step.
* Non-streaming: `result_or_cancel(handle, request)` waits for the result and polls for a disconnect, so an
  abandoned request does not keep its batch slot until `max_new_tokens`.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import Request

from matelix.inference.handle import GenerationResult, RequestHandle

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DISCONNECT_POLL_S = 0.25


def sse(data: object) -> str:
    """One server-sent event carrying `data` as JSON (or a literal string such as `[DONE]`)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n"


def wants_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


async def result_or_cancel(handle: RequestHandle, request: Request) -> GenerationResult:
    """The collected result of `handle`; cancels it (and returns what there is) if the client disconnects."""
    task = asyncio.ensure_future(handle.result())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                handle.cancel()
    finally:
        if not task.done():
            handle.cancel()
            task.cancel()
