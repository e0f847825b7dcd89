"""The `sampling` node of a command's config (conf/sampling/default.yaml) as a `GenerationConfig`."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from minigpt.inference.config import GenerationConfig
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError


def generation_config(sampling: DictConfig, tokenizer: Tokenizer, **options: Any) -> GenerationConfig:
    """`GenerationConfig` from the `sampling` keys (and `options`); generation also stops at `<|eos|>`.

    A bad value is the `ConfigError` that `GenerationConfig` raises, its field named as the user typed it
    (`sampling.temperature=0 must be > 0 …`).
    """
    fields = OmegaConf.to_container(sampling, resolve=True)
    assert isinstance(fields, dict)
    stop_tokens = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
    try:
        return GenerationConfig(**fields, **options, stop_tokens=stop_tokens)
    except ConfigError as err:
        if str(err).partition("=")[0] in fields:  # its messages start with `field=value`
            raise ConfigError(f"sampling.{err}") from None
        raise
