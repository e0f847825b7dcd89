"""`ServeSettings`: the server's address and limits (the keys of conf/serve.yaml other than `run`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from minigpt.utils.errors import ConfigError

# The weight dtypes a server may hold its model in: float32 (exact, the default) and the two 16-bit formats.
SERVING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ServeSettings:
    """Where the server listens and what it accepts; every limit refuses a request with an error, never crashes.

    `max_batch` requests decode together and `max_queue` more may wait: past that a request gets 429
    with `Retry-After: retry_after_s`. `max_total_tokens` bounds the prompt + new tokens of the running
    requests together (None: `max_batch` rows of the model's context). A request asks for at most
    `max_tokens_cap` new tokens (`default_max_tokens` when it does not say), sends at most
    `max_prompt_tokens` prompt tokens and `max_body_bytes` of JSON, and is ended after `request_timeout_s`.
    `dtype` is what the weights and the KV cache are held in while serving (docs/serving.md, "Serving in
    bfloat16": on a CPU with AVX-512 BF16 a wide model's 8-row step then costs little more than a 1-row one).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    model_name: str = "minigpt"
    max_batch: int = 8
    max_queue: int = 32
    max_total_tokens: int | None = None
    max_prefill_tokens: int = 2048
    max_tokens_cap: int = 1024
    default_max_tokens: int = 256
    max_prompt_tokens: int = 4096
    max_body_bytes: int = 1_048_576
    request_timeout_s: float = 300.0
    retry_after_s: int = 1
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_tokens_cap", "default_max_tokens", "max_prompt_tokens", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be ≥ 1.")
        if self.default_max_tokens > self.max_tokens_cap:
            raise ConfigError(
                f"default_max_tokens={self.default_max_tokens} is above max_tokens_cap={self.max_tokens_cap}; lower it."
            )
        if self.dtype not in SERVING_DTYPES:
            raise ConfigError(
                f"dtype={self.dtype} is not one the server holds weights in; use one of {list(SERVING_DTYPES)}."
            )
        if self.max_queue < 0 or self.request_timeout_s <= 0:
            raise ConfigError(f"max_queue={self.max_queue} must be ≥ 0 and request_timeout_s > 0.")

    @property
    def torch_dtype(self) -> torch.dtype:
        """`dtype` as a torch dtype."""
        return SERVING_DTYPES[self.dtype]

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ServeSettings:
        """The settings from a composed conf/serve.yaml."""
        return cls(**{field.name: cfg[field.name] for field in dataclasses.fields(cls)})
