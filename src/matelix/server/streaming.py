"""HTTP helpers shared by the streaming inference routes: SSE framing and unbuffered stream headers.

Starlette cancels a `StreamingResponse`'s body iterator when the client disconnects; body iterators call
`cancel()` in a `finally` so the generation leaves the batch at the next step. Non-streaming routes poll for
the disconnect in `server.generation.collect`.
"""

from __future__ import annotations

import json

from fastapi import Request

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: object) -> str:
    """One server-sent event carrying `data` as JSON (or a literal string such as `[DONE]`)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n"


def wants_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")
