"""`POST /v1/responses`: the Responses API, stateless (nothing is stored; `previous_response_id` is refused),
mapped onto the chat machinery: `input` (text or items) and `instructions` become chat messages, function
`tools`, `tool_choice` and `text.format` become their chat counterparts, and the answer comes back as
output items (`message` with `output_text`, `function_call`) — whole, or as Responses stream events
(`response.created` … `response.output_text.delta` … `response.completed`)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from matelix.inference.handle import Usage
from matelix.server import generation
from matelix.server.errors import BUSY_RESPONSES, ApiError, describe_validation_errors
from matelix.server.openai_route import OpenAIRoute, start_chat
from matelix.server.openai_schema import ChatCompletionRequest
from matelix.server.streaming import STREAM_HEADERS
from matelix.server.tool_parser import Piece, ToolCall
from matelix.server.tools import ToolCalls

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)
TEXT_PARTS = ("input_text", "output_text", "text")


class ResponsesRequest(BaseModel):
    """`POST /v1/responses` body (fields this server does not use are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(description="Text, or a list of message / function_call / "
                                                          "function_call_output items.")
    instructions: str | None = Field(None, description="A system message before the input.")
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = Field(None, description="`{\"format\": {\"type\": \"text\" | \"json_object\" | "
                                                          "\"json_schema\", ...}}`.")
    previous_response_id: str | None = Field(None, description="Not supported: this server stores nothing.")
    store: bool | None = Field(None, description="Accepted; nothing is stored either way.")
    seed: int | None = None

    def chat(self) -> ChatCompletionRequest:
        """The same request as a chat completion (raises ApiError for what cannot be mapped)."""
        if self.previous_response_id:
            raise ApiError(400, "previous_response_id: this server is stateless and stores no responses; send the "
                                "whole conversation as input", param="previous_response_id", code="invalid_value")
        body: dict[str, Any] = {"model": self.model, "messages": self.messages(), "max_tokens": self.max_output_tokens,
                                "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed,
                                "parallel_tool_calls": self.parallel_tool_calls}
        if self.tools:
            body["tools"] = [self._tool(t, i) for i, t in enumerate(self.tools)]
        if isinstance(self.tool_choice, dict):
            body["tool_choice"] = {"type": "function", "function": {"name": self.tool_choice.get("name")}}
        elif self.tool_choice is not None:
            body["tool_choice"] = self.tool_choice
        format_ = (self.text or {}).get("format")
        if format_:
            body["response_format"] = {"type": format_.get("type", "text")} if format_.get("type") != "json_schema" \
                else {"type": "json_schema", "json_schema": format_}
        try:
            return ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            message, param = describe_validation_errors(list(exc.errors()))
            raise ApiError(400, message.replace("Value error, ", ""), param=param, code="invalid_value") from exc

    @staticmethod
    def _tool(tool: dict, index: int) -> dict:
        if tool.get("type") != "function":
            raise ApiError(400, f"tools[{index}]: only function tools are supported, got {tool.get('type')!r}",
                           param=f"tools[{index}]", code="invalid_value")
        return {"type": "function", "function": {k: tool[k] for k in ("name", "description", "parameters", "strict")
                                                 if tool.get(k) is not None}}

    def messages(self) -> list[dict]:
        out: list[dict] = [{"role": "system", "content": self.instructions}] if self.instructions else []
        if isinstance(self.input, str):
            return [*out, {"role": "user", "content": self.input}]
        for i, item in enumerate(self.input):
            kind = item.get("type", "message")
            if kind == "message":
                out.append({"role": item.get("role"), "content": self._text(item.get("content"), i)})
            elif kind == "function_call":
                call = {"id": item.get("call_id"), "type": "function",
                        "function": {"name": item.get("name"), "arguments": item.get("arguments", "{}")}}
                if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls"):
                    out[-1]["tool_calls"].append(call)
                else:
                    out.append({"role": "assistant", "content": None, "tool_calls": [call]})
            elif kind == "function_call_output":
                out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": str(item.get("output", ""))})
            else:
                raise ApiError(400, f"input[{i}]: items of type {kind!r} are not supported", param=f"input[{i}]",
                               code="invalid_value")
        return out

    @staticmethod
    def _text(content: Any, index: int) -> Any:
        if not isinstance(content, list):
            return content
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(400, f"input[{index}].content: only text parts are supported, got {kind!r}",
                               param=f"input[{index}].content", code="invalid_value")
            texts.append(part.get("text", ""))
        return "".join(texts)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def message_item(item_id: str, text: str, status: str = "completed") -> dict:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []}


def call_item(call: ToolCall, item_id: str | None = None, arguments: str | None = None) -> dict:
    return {"type": "function_call", "id": item_id or _id("fc"), "call_id": call.id, "name": call.name,
            "arguments": call.arguments if arguments is None else arguments, "status": "completed"}


class Answer:
    """The response object being built (the same shape whole and in stream events)."""

    def __init__(self, body: ResponsesRequest, chat: ChatCompletionRequest):
        self.body, self.chat = body, chat
        self.id, self.created = _id("resp"), int(time.time())

    def object(self, status: str, output: list[dict], usage: Usage | None = None, reason: str | None = None) -> dict:
        incomplete = {"reason": "max_output_tokens"} if reason == "length" else None
        return {"id": self.id, "object": "response", "created_at": self.created,
                "status": "incomplete" if incomplete and status == "completed" else status,
                "model": self.body.model, "output": output, "instructions": self.body.instructions,
                "incomplete_details": incomplete, "error": None, "metadata": {}, "store": False,
                "temperature": self.chat.temperature, "top_p": self.chat.top_p,
                "max_output_tokens": self.body.max_output_tokens, "text": self.body.text or {"format": {"type": "text"}},
                "tools": self.body.tools or [], "tool_choice": self.body.tool_choice or "auto",
                "parallel_tool_calls": self.chat.parallel_tool_calls is not False,
                "usage": None if usage is None else {
                    "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens, "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0}}}


@router.post("/responses", response_model=None, responses=BUSY_RESPONSES)
async def responses(request: Request, body: ResponsesRequest) -> dict | StreamingResponse:
    """Answer `input` as a Responses API `response` (stateless), or Responses stream events with `stream`."""
    chat = body.chat()
    started, calls = await start_chat(request, chat)
    answer = Answer(body, chat)
    if body.stream:
        return StreamingResponse(stream(started, calls, answer), media_type="text/event-stream",
                                 headers=STREAM_HEADERS)
    [result] = await generation.collect(request, started)
    content, found = calls.parse(result.text) if calls else (result.text, [])
    output = ([message_item(_id("msg"), content)] if content else []) + [call_item(c) for c in found]
    return answer.object("completed", output, result.usage, result.finish_reason)


def event(kind: str, sequence: int, **data) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': sequence, **data})}\n\n"


class EventWriter:
    """Responses stream events for one answer's pieces, in order: text opens (or continues) a message item,
    a call's head opens a function_call item, its argument pieces are `function_call_arguments.delta`
    events; an item is closed (its `.done` events) when the next one opens or the answer ends."""

    def __init__(self):
        self.seq = iter(range(1_000_000_000))
        self.output: list[dict] = []
        self.open: dict | None = None  # the item being written: {"item", "index", "parts"}

    def event(self, kind: str, **data) -> str:
        return event(kind, next(self.seq), **data)

    def _opening(self, item: dict) -> list[str]:
        out = self.close()
        self.open = {"item": item, "index": len(self.output), "parts": []}
        self.output.append(item)
        return [*out, self.event("response.output_item.added", output_index=self.open["index"], item=item)]

    def piece(self, piece: Piece) -> list[str]:
        out: list[str] = []
        if piece.call is not None:
            out += self._opening({**call_item(piece.call, _id("fc"), ""), "status": "in_progress"})
            return out
        current = self.open
        if piece.index is not None:
            current["parts"].append(piece.arguments)
            return [self.event("response.function_call_arguments.delta", item_id=current["item"]["id"],
                               output_index=current["index"], delta=piece.arguments)]
        if current is None or current["item"]["type"] != "message":
            out += self._opening(message_item(_id("msg"), "", "in_progress"))
            out.append(self.event("response.content_part.added", item_id=self.open["item"]["id"],
                                  output_index=self.open["index"], content_index=0,
                                  part={"type": "output_text", "text": "", "annotations": []}))
        self.open["parts"].append(piece.content)
        out.append(self.event("response.output_text.delta", item_id=self.open["item"]["id"],
                              output_index=self.open["index"], content_index=0, delta=piece.content, logprobs=[]))
        return out

    def close(self) -> list[str]:
        current, self.open = self.open, None
        if current is None:
            return []
        item, index, whole = current["item"], current["index"], "".join(current["parts"])
        if item["type"] == "message":
            done = message_item(item["id"], whole)
            out = [self.event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                              text=whole, logprobs=[]),
                   self.event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                              part=done["content"][0])]
        else:
            done = {**item, "arguments": whole, "status": "completed"}
            out = [self.event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                              arguments=whole)]
        self.output[index] = done
        return [*out, self.event("response.output_item.done", output_index=index, item=done)]


async def stream(started, calls: ToolCalls | None, answer: Answer) -> AsyncIterator[str]:
    """Responses stream events for one answer: text as `output_text` deltas of a message item, each tool
    call as a function_call item whose arguments stream as they are generated, then `response.completed`
    with the whole response."""
    parser = calls.stream() if calls else None
    writer = EventWriter()
    yield writer.event("response.created", response=answer.object("in_progress", []))
    yield writer.event("response.in_progress", response=answer.object("in_progress", []))
    async for _, ev in started.events():
        if ev.finish_reason == "error":
            error = generation.error_of(ev)
            yield writer.event("error", code=error.code, message=error.message, param=None)
            return
        pieces = (parser.push(ev.text) if parser else [Piece(content=ev.text)]) if ev.text else []
        if ev.finished and parser is not None:
            pieces += parser.finish()
        for piece in pieces:
            for chunk in writer.piece(piece):
                yield chunk
        if ev.finished:
            for chunk in writer.close():
                yield chunk
            yield writer.event("response.completed", response=answer.object("completed", writer.output, ev.usage,
                                                                             ev.finish_reason))
