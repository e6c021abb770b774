"""The OpenAI wire format: request, response and stream-chunk models for `/v1/*` (HTTP only; the engine
never sees these).

Requests ignore unknown fields (clients send many optional ones), normalise the flexible shapes (`stop`
as a string or list, `prompt` as text or token ids) and reject, with a message naming the field,
parameters whose meaning this server cannot honour. Each request model turns itself into the engine's
`SamplingParams`. Limits a deployment may change (how many stop strings, `n`) are settings, checked by the
admission gate; the constants here are shape limits of the format itself. Responses are plain pydantic
models serialised to exactly the fields the `openai` SDK reads; `usage` is the engine's own `Usage`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from matelix.inference.grammar import GrammarSpec
from matelix.inference.handle import Usage
from matelix.inference.sampling import (
    MAX_LOGPROBS,
    MAX_STOP_STRING_LENGTH,
    SEED_MAX,
    SEED_MIN,
    SamplingParams,
)
from matelix.server.messages import ChatMessage
from matelix.server.tool_formats import HERMES, CallFormat
from matelix.settings import Quantization

MAX_PROMPTS = 64
MAX_CHOICES = 128  # prompts x n of one completions request
FinishReason = Literal["stop", "length", "tool_calls"]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = "response"
    description: str | None = None
    json_schema: dict[str, Any] = Field(alias="schema", description="The JSON schema the output follows.")
    strict: bool | None = Field(None, description="true or unset: no properties beyond the schema's; false: the "
                                                  "schema as JSON Schema reads it (extra properties where it "
                                                  "does not forbid them). The output validates either way.")


class ResponseFormat(BaseModel):
    """`{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "json_schema": {...}}`."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs json_schema: {\"name\": ..., \"schema\": {...}}")
        return self

    def grammar_spec(self, param: str = "response_format") -> GrammarSpec | None:
        if self.type == "json_object":
            return GrammarSpec("json_object", param=param)
        if self.type == "json_schema":
            return GrammarSpec("json_schema", json.dumps(self.json_schema.json_schema), param,
                               strict=self.json_schema.strict is not False)
        return None


GUIDES = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON schema of the arguments object.")
    strict: bool | None = Field(None, description="true: with tool_choice auto, a call of this function follows "
                                                  "its schema once the model opens it; false: required / named "
                                                  "calls follow the schema as JSON Schema reads it.")


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: FunctionDef


class ChosenFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: ChosenFunction


class SamplingRequest(BaseModel):
    """Fields shared by chat and text completions (OpenAI names, plus vLLM's `top_k`, `min_p`,
    `repetition_penalty`)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="A model id from GET /v1/models.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate (clipped to the context).")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    n: int = Field(1, ge=1, description="Choices per prompt (at most MATELIX_MAX_N); choice j samples with "
                                        "seed + j.")
    stop: list[str] | None = Field(None, description="A string or a list (at most MATELIX_MAX_STOP_STRINGS); "
                                                     "never part of the returned text.")
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX,
                             description="Same seed + prompt + parameters → same text (a 64-bit integer).")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    top_k: int = Field(0, ge=-1, description="vLLM extra: keep the k most likely tokens; 0 or -1 = off.")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="vLLM extra: drop tokens below min_p x the top one.")
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0, description="vLLM extra, transformers semantics.")
    stream: bool = Field(False, description="Send server-sent events of chunks, then `data: [DONE]`.")
    stream_options: StreamOptions | None = Field(None, description="Only with stream: include_usage adds a "
                                                                   "final usage chunk.")
    logit_bias: dict[str, float] | None = Field(None, description="Token id (as a string) → bias from -100 to 100, "
                                                                  "added to the logits before sampling.")
    user: str | None = Field(None, description="Accepted and ignored.")
    stop_token_ids: list[int] | None = Field(None, max_length=64, description="vLLM extra: more stop tokens.")
    ignore_eos: bool = Field(False, description="vLLM extra: keep generating past EOS (benchmarks).")
    quantization: Quantization | None = Field(
        None, description="Lab extra: the model's weights, none (fp32), int8 or fp16 (CPU only); a resident model "
                          "loaded otherwise is reloaded. Default: as loaded, else MATELIX_QUANTIZATION.")

    @field_validator("temperature", "top_p", "presence_penalty", "frequency_penalty", "min_p",
                     "repetition_penalty", "n", "top_k", "stream", "ignore_eos", mode="before")
    @classmethod
    def _null_means_default(cls, value: Any, info: ValidationInfo) -> Any:
        # Clients send explicit nulls for "use the default"; the default lives on the field.
        return cls.model_fields[info.field_name].default if value is None else value

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: Any) -> Any:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ValueError("must be a string or a list of strings")
        if any(len(s) > MAX_STOP_STRING_LENGTH for s in stops):
            raise ValueError(f"a stop sequence may be at most {MAX_STOP_STRING_LENGTH} characters long")
        return [s for s in stops if s] or None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids_and_bounded_biases(cls, value: dict | None) -> dict | None:
        for key, bias in (value or {}).items():
            if not key.strip().isdigit():
                raise ValueError(f"keys must be token ids, got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases must be from -100 to 100, got {bias} for token {key}")
        return value or None

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_tokens

    guided_json: dict[str, Any] | str | None = Field(None, description="vLLM extra: a JSON schema the output "
                                                                       "follows.")
    guided_regex: str | None = Field(None, description="vLLM extra: a regular expression the output matches.")
    guided_choice: list[str] | None = Field(None, min_length=1, description="vLLM extra: the output is one of these.")
    guided_grammar: str | None = Field(None, description="vLLM extra: an EBNF grammar (GBNF style) the output "
                                                         "follows.")

    @model_validator(mode="after")
    def _one_guide(self) -> SamplingRequest:
        given = [f for f in GUIDES if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of {', '.join(GUIDES)}; got {', '.join(given)}")
        return self

    def grammar_spec(self) -> GrammarSpec | None:
        """What the output is constrained to, if anything (compiled against the model's tokenizer later)."""
        if self.guided_json is not None:
            schema = self.guided_json if isinstance(self.guided_json, str) else json.dumps(self.guided_json)
            return GrammarSpec("json_schema", schema, "guided_json")
        if self.guided_regex is not None:
            return GrammarSpec("regex", self.guided_regex, "guided_regex")
        if self.guided_choice is not None:
            return GrammarSpec.choices(self.guided_choice)
        if self.guided_grammar is not None:
            return GrammarSpec("ebnf", self.guided_grammar, "guided_grammar")
        return None

    @property
    def top_logprobs_wanted(self) -> int | None:
        """Alternatives per generated token the answer shows (None = no logprobs)."""
        return None

    @property
    def prompt_logprobs_wanted(self) -> int | None:
        return None

    def sampling_params(self, max_new_tokens: int, grammar: object | None = None) -> SamplingParams:
        """The engine's parameters for this request; `max_new_tokens` after defaulting to the context,
        `grammar` compiled from `grammar_spec()`."""
        return SamplingParams(
            max_new_tokens=max_new_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=max(self.top_k, 0), min_p=self.min_p, repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty, seed=self.seed,
            stop=tuple(self.stop or ()), stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=self.ignore_eos, logprobs=self.top_logprobs_wanted,
            prompt_logprobs=self.prompt_logprobs_wanted,
            logit_bias=tuple((int(k), float(v)) for k, v in (self.logit_bias or {}).items()), grammar=grammar)


class ChatCompletionRequest(SamplingRequest):
    """`POST /v1/chat/completions` body."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = Field(None, description="Return each generated token's logprob.")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description="With logprobs: that many most "
                                                                             "likely alternatives per token.")
    response_format: ResponseFormat | None = Field(None, description="text, json_object (any JSON object) or "
                                                                     "json_schema (output valid against the schema).")
    tools: list[Tool] | None = Field(None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="none, auto (default with tools), required, or {type: function, function: {name}}.")
    parallel_tool_calls: bool | None = Field(None, description="With auto: several calls in one answer (default).")
    functions: list[Any] | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @property
    def top_logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    @field_validator("functions")
    @classmethod
    def _no_functions(cls, value: list | None) -> list | None:
        if value:
            raise ValueError("functions (the legacy function-calling API) is not supported; send tools instead")
        return value

    @field_validator("tools")
    @classmethod
    def _unique_tool_names(cls, value: list[Tool] | None) -> list[Tool] | None:
        names = [t.function.name for t in value or []]
        if len(set(names)) != len(names):
            raise ValueError("tool function names must be unique")
        return value or None

    @model_validator(mode="after")
    def _choice_names_a_tool(self) -> ChatCompletionRequest:
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice) and choice.function.name not in self.tool_names:
            raise ValueError(f"tool_choice names {choice.function.name!r}, which is not in tools")
        if choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self

    @property
    def tool_names(self) -> set[str]:
        return {t.function.name for t in self.tools or []}

    @property
    def tool_mode(self) -> str:
        """"none" (no tools in the prompt, no parsing), "auto", "required" or "named"."""
        if not self.tools or self.tool_choice == "none":
            return "none"
        if isinstance(self.tool_choice, NamedToolChoice):
            return "named"
        return self.tool_choice or "auto"

    def tool_dicts(self) -> list[dict]:
        return [t.model_dump(exclude_none=True) for t in self.tools or []]

    def grammar_spec(self, call_format: CallFormat = HERMES) -> GrammarSpec | None:
        """`tool_choice` required / named constrain the answer to a call in the model's `call_format`; auto
        with `strict: true` functions constrains their calls once opened; else response_format, guided_*."""
        if self.tool_mode in ("required", "named"):
            name = self.tool_choice.function.name if self.tool_mode == "named" else None
            return call_format.forced(self.tool_dicts(), name)
        triggered = call_format.triggered(self.tool_dicts()) if self.tool_mode == "auto" else None
        if triggered is not None:
            return triggered
        if self.response_format is not None and self.response_format.type != "text":
            return self.response_format.grammar_spec()
        return super().grammar_spec()

    @property
    def max_new_tokens(self) -> int | None:
        """`max_completion_tokens` wins over the older `max_tokens`."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingRequest):
    """`POST /v1/completions` body; `prompt` is a string, a list of strings, token ids or lists of them."""

    prompt: list[str] | list[list[int]] = Field(min_length=1, max_length=MAX_PROMPTS)
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description="Each token's logprob and that many "
                                                                         "most likely alternatives; with echo also "
                                                                         "the prompt's.")
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_as_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool)
                                                     for t in value):
            return [value]
        if isinstance(value, list) and all(isinstance(p, str) for p in value):
            return value
        if isinstance(value, list) and all(isinstance(p, list) and p and all(isinstance(t, int) for t in p)
                                           for p in value):
            return value
        raise ValueError("must be a string, a list of strings, a list of token ids, or a list of "
                         "non-empty lists of token ids")

    @field_validator("echo", mode="before")
    @classmethod
    def _null_echo(cls, value: Any) -> Any:
        return False if value is None else value

    @field_validator("prompt")
    @classmethod
    def _bounded_choices(cls, value: list, info: ValidationInfo) -> list:
        n = info.data.get("n") or 1
        if len(value) * n > MAX_CHOICES:
            raise ValueError(f"{len(value)} prompts x n={n} asks for {len(value) * n} completions; at most "
                             f"{MAX_CHOICES} per request")
        return value

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _null_max_tokens(cls, value: Any) -> Any:
        return 16 if value is None else value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix (insertion) is not supported by this server; remove it")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_is_n(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value != info.data.get("n"):
            raise ValueError("best_of is not supported by this server; omit it or set it equal to n")
        return value

    @property
    def top_logprobs_wanted(self) -> int | None:
        return self.logprobs

    @property
    def prompt_logprobs_wanted(self) -> int | None:
        return self.logprobs if self.echo else None



# ---- responses --------------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    served_as: Literal["model", "merged", "adapter"] | None = Field(
        None, description="model: a model of its own; merged: an adapter merged into its own copy of the base; "
                          "adapter: an adapter on the shared resident base (when not resident: how it would load).")
    resident: bool = Field(False, description="Loaded now.")
    base_model: str | None = Field(None, description="The base an adapter runs on.")
    checkpoint_step: int | None = Field(None, description="`run@checkpoint-N` / `run@latest`: the step served.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[dict] | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None
    refusal: None = None


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists over the tokens of `text` (echoed prompt first)."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    """A stream delta: only the fields it carries (the last one per choice is `{}`)."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict] | None = None

    @model_serializer
    def _set_fields_only(self) -> dict:
        return {k: v for k, v in (("role", self.role), ("content", self.content), ("tool_calls", self.tool_calls))
                if v is not None}


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
