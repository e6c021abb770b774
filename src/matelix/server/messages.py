"""The one chat message model, shared by `/chat`, `/chat_stream` and `/v1/chat/completions`.

`content` is kept as sent (a string, a list of OpenAI content parts, or null); `inference.chat` turns it
into text in one place (`message_text`) when the prompt is rendered, so a bad part is a 400 naming
`messages[i].content` on every route. Unknown keys are ignored (OpenAI clients send `refusal`,
`annotations` and the like back with assistant messages); `developer` is what newer clients call `system`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ROLE_ALIASES = {"developer": "system"}


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str | dict = "{}"


class ToolCallItem(BaseModel):
    """A tool call as OpenAI sends it back in the history: `{"id", "type": "function", "function": {...}}`."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of a conversation."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[Any] | None = None
    name: str | None = None
    tool_calls: list[ToolCallItem] | None = Field(None, description="An assistant's earlier tool calls.")
    tool_call_id: str | None = Field(None, description="With role tool: the call this is the result of.")

    @field_validator("role", mode="before")
    @classmethod
    def _role_alias(cls, value: Any) -> Any:
        if value == "function":
            raise ValueError("role 'function' (the legacy function-calling API) is not supported; send tool "
                             "results with role 'tool' and tool_call_id")
        return ROLE_ALIASES.get(value, value) if isinstance(value, str) else value

    def as_dict(self) -> dict:
        """What `inference.chat.render_chat` takes."""
        out: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None and self.role == "tool":
            out["name"] = self.name
        return out


def texts_of(messages: list[ChatMessage]) -> list[tuple[str, str]]:
    """(field, text) of every message, for the admission gate's length limits. Content that is not text
    counts as its text parts here; it is refused, naming its field, when the prompt is rendered."""
    texts = []
    for i, message in enumerate(messages):
        content = message.content
        if isinstance(content, list):
            content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        texts.append((f"messages[{i}].content", content or ""))
    return texts
