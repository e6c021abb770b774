"""Forwarding the lab's generation routes to vLLM (`MATELIX_INFERENCE_BACKEND=vllm`).

The routes stay the lab's: `/v1/chat/completions`, `/v1/completions`, `/chat` and `/chat_stream` validate
their bodies as always (the API key, body size and browser checks run before them), then hand over here:

    forwarder = forwarder_of(request)           # None with the lab's own engine
    if forwarder:
        return await forwarder.openai(request, body, "/v1/chat/completions")

Here the request-shape limits (`MATELIX_MAX_*`) and the server-wide cap on generations in flight (429 with
Retry-After) are applied as for the lab's engine, the model is made available upstream (`VllmUpstream`
starts `vllm serve` for it), and the body is passed on unchanged (vLLM-only fields included). Answers come back
as they are, streamed chunk by chunk; tokens and time to first token go to the lab's Prometheus metrics.
Upstream errors keep their 4xx status in the lab's error shape; vLLM missing or without a GPU is a 409
`vllm_unavailable`; an upstream that fails or cannot be reached is a 502 `upstream_failed`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from matelix.inference.admission import Overloaded
from matelix.inference.handle import Usage
from matelix.inference.vllm_server import UpstreamFailed, VllmUnavailable, VllmUpstream
from matelix.server.errors import ApiError, error_body
from matelix.server.inference_errors import INFERENCE_ERRORS, Fields, to_api_error
from matelix.server.messages import texts_of
from matelix.server.streaming import STREAM_HEADERS, sse

CONNECT_TIMEOUT_S = 10.0


def forwarder_of(request: Request) -> Forwarder | None:
    return getattr(request.app.state, "vllm", None)


def upstream_error(exc: Exception, fields: Fields) -> ApiError:
    if isinstance(exc, VllmUnavailable):
        return ApiError(409, str(exc), code="vllm_unavailable")
    if isinstance(exc, UpstreamFailed):
        return ApiError(502, str(exc), code="upstream_failed")
    if isinstance(exc, httpx.HTTPError):
        return ApiError(502, f"vLLM cannot be reached: {type(exc).__name__}: {exc}", code="upstream_failed")
    return to_api_error(exc, fields)


def error_from_upstream(status: int, raw: bytes) -> ApiError:
    """An upstream error answer in the lab's shape: its 4xx kept, a 5xx reported as 502."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    err = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), dict) else data
    err = err if isinstance(err, dict) else {}
    message = str(err.get("message") or raw[:500].decode(errors="replace") or f"HTTP {status}")
    if status >= 500:
        return ApiError(502, f"vLLM failed ({status}): {message}", code="upstream_failed")
    code = err.get("code") if isinstance(err.get("code"), str) else None
    return ApiError(status, message, param=err.get("param"), code=code or "upstream_rejected")


class Forwarder:
    """The lab's side of the vLLM backend: one per app (`app.state.vllm`)."""

    def __init__(self, app_state):
        self.settings = app_state.settings
        self.registry = app_state.registry
        self.metrics = app_state.metrics
        self.upstream = VllmUpstream(self.settings, self.registry)
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S))
        self.capacity = self.settings.max_concurrent_generations + self.settings.max_queued_generations
        self.in_flight = 0

    async def close(self) -> None:
        await self.client.aclose()
        await self.upstream.close()

    # ----- one request ----------------------------------------------------------------------------

    async def _open(self, path: str, payload: dict, model_ref: str | None, fields: Fields, *,
                    stream: bool, n: int) -> tuple[httpx.Response, str]:
        """Admit the request (counted in flight until `_release`), make its model available upstream and
        send it; returns the upstream response (status < 400) and the model id."""
        if self.in_flight + n > self.capacity:
            raise to_api_error(Overloaded(f"the server already holds {self.in_flight} generations "
                                          f"(MATELIX_MAX_CONCURRENT_GENERATIONS + MATELIX_MAX_QUEUED_GENERATIONS = "
                                          f"{self.capacity}); retry shortly"), fields)
        self.in_flight += n
        try:
            url, model_id = await self.upstream.ensure(model_ref)
            payload = {**payload, "model": model_id}
            if stream:  # usage always comes back for the metrics; it reaches the client only when asked for
                payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
            request = self.client.build_request("POST", url + path, json=payload, headers=self.upstream.headers)
            response = await self.client.send(request, stream=True)
        except (*INFERENCE_ERRORS, VllmUnavailable, UpstreamFailed, httpx.HTTPError) as exc:
            self.in_flight -= n
            raise upstream_error(exc, fields) from exc
        except BaseException:
            self.in_flight -= n
            raise
        if response.status_code >= 400:
            raw = await response.aread()
            await response.aclose()
            self.in_flight -= n
            raise error_from_upstream(response.status_code, raw)
        return response, model_id

    async def json(self, path: str, payload: dict, model_ref: str | None, fields: Fields, n: int = 1) -> dict:
        response, model_id = await self._open(path, payload, model_ref, fields, stream=False, n=n)
        try:
            data = json.loads(await response.aread())
        except (ValueError, httpx.HTTPError) as exc:
            raise upstream_error(UpstreamFailed(f"vLLM's answer could not be read: {exc}"), fields) from exc
        finally:
            await response.aclose()
            self.in_flight -= n
        self._record(model_id, data.get("usage"), None)
        return data

    async def chunks(self, path: str, payload: dict, model_ref: str | None, fields: Fields,
                     n: int = 1) -> AsyncIterator[dict | str]:
        """Opens the stream (errors raised before the first byte), then yields each event's JSON (the final
        usage chunk included) and "[DONE]"; a break in the stream becomes an error event."""
        response, model_id = await self._open(path, payload, model_ref, fields, stream=True, n=n)
        return self._events(response, model_id, n)

    async def _events(self, response: httpx.Response, model_id: str, n: int) -> AsyncIterator[dict | str]:
        started, ttft = time.perf_counter(), None
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    yield data
                    return
                chunk = json.loads(data)
                if ttft is None and chunk.get("choices"):
                    ttft = time.perf_counter() - started
                if chunk.get("usage"):
                    self._record(model_id, chunk["usage"], ttft)
                yield chunk
        except (httpx.HTTPError, ValueError) as exc:
            yield error_body(f"the vLLM stream broke off: {type(exc).__name__}: {exc}", type="server_error",
                             code="upstream_failed")
            yield "[DONE]"
        finally:
            await response.aclose()
            self.in_flight -= n

    def _record(self, model_id: str, usage: dict | None, ttft: float | None) -> None:
        if isinstance(usage, dict):
            self.metrics.record_generation(model_id, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                           completion_tokens=int(usage.get("completion_tokens") or 0),
                                           ttft_s=ttft)

    # ----- the routes' entry points ---------------------------------------------------------------

    def check_limits(self, *, texts, messages: int | None, max_new_tokens: int | None, n: int, stop: int,
                     fields: Fields) -> None:
        try:
            self.registry.admission.check_limits(texts=texts, messages=messages, max_new_tokens=max_new_tokens,
                                                 n=n, stop=stop, tokens_param=fields.max_tokens)
        except INFERENCE_ERRORS as exc:
            raise to_api_error(exc, fields) from exc

    async def openai(self, request: Request, body, path: str) -> JSONResponse | StreamingResponse:
        """A validated `/v1/chat/completions` or `/v1/completions` body, forwarded as the client sent it."""
        fields = Fields(model="model", prompt="messages" if hasattr(body, "messages") else "prompt", dotted=True)
        if hasattr(body, "messages"):
            texts, messages = texts_of(body.messages), len(body.messages)
        else:
            texts, messages = [(f"prompt[{i}]", p) for i, p in enumerate(body.prompt) if isinstance(p, str)], None
        prompts = len(body.prompt) if hasattr(body, "prompt") else 1
        self.check_limits(texts=texts, messages=messages, max_new_tokens=body.max_new_tokens, n=body.n,
                          stop=len(body.stop or ()), fields=fields)
        payload = await request.json()
        n = body.n * prompts
        if not body.stream:
            return JSONResponse(await self.json(path, payload, body.model, fields, n))
        events = await self.chunks(path, payload, body.model, fields, n)
        return StreamingResponse(_relay(events, body.include_usage), media_type="text/event-stream",
                                 headers=STREAM_HEADERS)

    async def chat(self, body, fields: Fields, limits) -> tuple[dict, str]:
        """`/chat`: the lab's chat body as a chat completion; returns (answer JSON, model id)."""
        self.check_limits(texts=limits.texts, messages=limits.messages, max_new_tokens=limits.max_new_tokens,
                          n=1, stop=limits.stop, fields=fields)
        data = await self.json("/v1/chat/completions", chat_payload(body), body.model_dir, fields)
        return data, data.get("model") or self.upstream.model_id(body.model_dir)

    async def chat_events(self, body, fields: Fields, limits) -> AsyncIterator[dict | str]:
        """`/chat_stream`: the chunks of the lab's chat body as a streamed chat completion."""
        self.check_limits(texts=limits.texts, messages=limits.messages, max_new_tokens=limits.max_new_tokens,
                          n=1, stop=limits.stop, fields=fields)
        return await self.chunks("/v1/chat/completions", {**chat_payload(body), "stream": True},
                                 body.model_dir, fields)


async def _relay(events: AsyncIterator[dict | str], include_usage: bool) -> AsyncIterator[str]:
    """The upstream events as the client asked for them (the usage chunk only with include_usage)."""
    async for event in events:
        if isinstance(event, dict) and not include_usage:
            if event.get("usage") and not event.get("choices") and "error" not in event:
                continue
            event.pop("usage", None)
        yield sse(event)


def chat_payload(body) -> dict:
    """The lab's `/chat` body (`ChatRequest`) as an OpenAI chat completion request (vLLM's extras for
    top_k, min_p and repetition_penalty, sent only when set)."""
    messages = [m.as_dict() for m in body.messages]
    if body.system:
        messages.insert(0, {"role": "system", "content": body.system})
    payload = {"model": body.model_dir, "messages": messages, "max_tokens": body.max_new_tokens,
               "temperature": body.temperature, "top_p": body.top_p, "presence_penalty": body.presence_penalty,
               "frequency_penalty": body.frequency_penalty, "stop": body.stops or None, "seed": body.seed}
    extras = {"top_k": (body.top_k, 0), "min_p": (body.min_p, 0.0),
              "repetition_penalty": (body.repetition_penalty, 1.0)}
    payload.update({k: v for k, (v, off) in extras.items() if v != off})
    return {k: v for k, v in payload.items() if v is not None}


def chat_response(data: dict, model: str) -> dict:
    """The `/chat` answer's fields from a chat completion."""
    choice = (data.get("choices") or [{}])[0]
    usage = data.get("usage") or {}
    return {"model": model, "response": (choice.get("message") or {}).get("content") or "",
            "finish_reason": choice.get("finish_reason") or "stop",
            "usage": {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                      "completion_tokens": int(usage.get("completion_tokens") or 0)}}


async def lab_chat_stream(events: AsyncIterator[dict | str], model: str, as_sse: bool) -> AsyncIterator[str]:
    """`/chat_stream`'s own formats from streamed chat completion chunks: plain text chunks, or SSE
    `{"delta"}` events, then `{"model", "finish_reason", "usage"}` and `[DONE]` (errors as the lab sends them)."""
    finish = None
    async for event in events:
        if isinstance(event, str):
            break
        if "error" in event:
            error = event["error"]
            yield sse(event) if as_sse else f"\n[error: {error.get('message')}]"
            continue
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield sse({"delta": text}) if as_sse else text
            finish = choice.get("finish_reason") or finish
        if event.get("usage") and as_sse:
            usage = Usage(**{k: int(event["usage"].get(k) or 0) for k in ("prompt_tokens", "completion_tokens")})
            yield sse({"model": model, "finish_reason": finish or "stop", "usage": usage.model_dump()})
    if as_sse:
        yield sse("[DONE]")
