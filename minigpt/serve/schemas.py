"""The request bodies of /v1/chat/completions and /v1/completions, as strict pydantic models.

Strict: a wrong type is refused rather than coerced (`"temperature": "hot"` and `"n": "2"` are 400s) and
an unknown field is refused by name, as OpenAI's API does, instead of being silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Strict):
    """`stream_options`: `include_usage` adds a last chunk with the token counts."""

    include_usage: bool = False


class Sampling(_Strict):
    """What both endpoints share: the model, the sampling parameters, streaming.

    `temperature` 0 decodes greedily; `seed` makes sampling repeatable (choice i of `n` uses seed + i);
    `stop` is up to 4 strings, cut from the returned text.
    """

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def stop_strings(self) -> list[str]:
        """`stop` as a list (empty strings dropped)."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [stop for stop in stops if stop]


class TextPart(_Strict):
    """A text part of a message's content: `{"type": "text", "text": "..."}`."""

    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    """`image_url`: a `data:image/png;base64,...` URL (`detail` is accepted and has no effect here)."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    """An image part of a user message (multimodal model folders, `minigpt.serve.images`)."""

    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Strict):
    """One message of a conversation: its content a string, or OpenAI's list of text and image parts."""

    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None


class ChatRequest(Sampling):
    """POST /v1/chat/completions. `max_completion_tokens` is the newer name of `max_tokens`."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(Sampling):
    """POST /v1/completions: continue `prompt` (special tokens written in it are read as such)."""

    prompt: str
