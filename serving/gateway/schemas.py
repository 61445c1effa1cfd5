"""Request bodies of the OpenAI-compatible routes, validated at the edge.

Only what the gateway must understand is typed; every other field (vLLM's extensions such as
`min_tokens`, `return_token_ids` or `guided_json`, or new OpenAI fields) passes through to the
engine unchanged, which then accepts or refuses it with its own 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.gateway.errors import InvalidRequest

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class StreamOptions(_Open):
    include_usage: bool = False


class ChatMessage(_Open):
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _Sampling(_Open):
    model: Annotated[str, Field(min_length=1, max_length=300)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=128)] = 1
    """Choices to generate; OpenAI allows up to 128."""
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _stream_options_need_stream(self):
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self):
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def question(self) -> str:
        """The text of the last user message (parts of type text joined)."""
        for message in reversed(self.messages):
            if message.role == "user":
                return content_text(message.content)
        return ""


TokenIds = Annotated[list[Annotated[int, Field(ge=0, lt=2**31)]], Field(min_length=1)]


class CompletionRequest(_Sampling):
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1)]
    )
    """Text, texts, token ids (`[1, 2, 3]`) or lists of token ids (`[[1, 2], [3]]`), as in
    OpenAI's API."""
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool | None = None


class EmbeddingRequest(_Open):
    """POST /v1/embeddings. Served by an embedder the gateway was given (a knowledge base's,
    under its model name or its app's name); texts only: token-id inputs are refused."""

    model: Annotated[str, Field(min_length=1, max_length=300)]
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class ResponsesRequest(_Open):
    """POST /v1/responses (OpenAI's Responses API), passed to vLLM's own implementation for
    the base model or an adapter; only what the gateway routes on is checked here."""

    model: Annotated[str, Field(min_length=1, max_length=300)]
    input: str | list[Any] | None = None
    stream: bool = False


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error answer's body (serving/gateway/errors.py writes it); documented in OpenAPI."""

    error: ErrorDetail


def content_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def parse(model: type[BaseModel], body: object) -> Any:
    """Validate a request body; the first problem becomes a 400 naming the field.

    Raises:
        InvalidRequest: with `param` set to the field's dotted path (e.g. messages.0.role).
    """
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False)) from None


def invalid_request(problems: Sequence[Mapping[str, Any]], *, skip: int = 0) -> InvalidRequest:
    """The 400 for validation `problems` (pydantic's, or FastAPI's with `skip=1` to drop their
    leading "body"): the first one, naming its field, and how many more there are."""
    first = problems[0]
    param = ".".join(str(p) for p in first["loc"][skip:]) or None
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = f"'{param}' is a required property"
    elif param:
        message = f"'{param}': {message}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem(s))"
    return InvalidRequest(message, param=param)
