"""`POST /v1/embeddings`: mean-pooled, L2-normalised last hidden states of a served model
(`inference.embeddings`), in OpenAI's shape (`float` lists or `base64` of little-endian float32)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from matelix.inference.embeddings import embed, hidden_size
from matelix.server.errors import ApiError
from matelix.server.generation import registry_of
from matelix.server.inference_errors import INFERENCE_ERRORS, Fields, to_api_error
from matelix.server.openai_route import OpenAIRoute, check_model

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)
MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="A model id from GET /v1/models.")
    input: list[str] | list[list[int]] = Field(description="A string, a list of strings, token ids, or a list of "
                                                           "token-id lists; none may be empty.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Only the model's own size is supported.")
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        elif isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            value = [value]
        if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
            raise ValueError(f"must be a string, token ids, or a list of 1 to {MAX_INPUTS} of either")
        if not (all(isinstance(v, str) and v for v in value)
                or all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value)):
            raise ValueError("must be non-empty strings or non-empty lists of token ids, not a mix")
        return value


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: dict[str, int]


@router.post("/embeddings")
async def embeddings(request: Request, body: EmbeddingRequest) -> EmbeddingList:
    """Embed text or token ids with a served model (mean-pooled, unit-length last hidden states)."""
    await check_model(request.app, body.model)
    registry = registry_of(request)
    texts = [(f"input[{i}]", t) for i, t in enumerate(body.input) if isinstance(t, str)]
    try:
        registry.admission.check_limits(texts=texts)
        loaded = await registry.acquire(body.model, prefer_resident=False)
    except INFERENCE_ERRORS as exc:
        raise to_api_error(exc, Fields(model="model", prompt="input")) from exc
    size = hidden_size(loaded.model)
    if body.dimensions is not None and body.dimensions != size:
        raise ApiError(400, f"dimensions: this model's embeddings have {size} dimensions and cannot be shortened; "
                            f"omit dimensions or send {size}", param="dimensions", code="invalid_value")
    ids = await asyncio.to_thread(lambda: [loaded.encode(t) if isinstance(t, str) else t for t in body.input])
    vocab, context = loaded.engine.vocab_size, loaded.context_length
    for i, row in enumerate(ids):
        if not row:
            raise ApiError(400, f"input[{i}] has no tokens", param="input", code="invalid_value")
        if len(row) > context:
            raise ApiError(400, f"input[{i}] has {len(row)} tokens; the model's context is {context}",
                           param="input", code="context_length_exceeded")
        if any(not 0 <= t < vocab for t in row):
            raise ApiError(400, f"input[{i}] holds token ids outside the vocabulary (0..{vocab - 1})",
                           param="input", code="invalid_value")
    vectors = await asyncio.to_thread(embed, loaded.model, ids)
    data = [Embedding(index=i, embedding=base64.b64encode(v.numpy().astype("<f4").tobytes()).decode()
                      if body.encoding_format == "base64" else v.tolist()) for i, v in enumerate(vectors)]
    tokens = sum(len(row) for row in ids)
    return EmbeddingList(data=data, model=body.model, usage={"prompt_tokens": tokens, "total_tokens": tokens})
