"""Shared plumbing of the inference command lines (`generate`, `chat`, `export.hf`): key=value options.

Options are the keys of `conf/<name>.yaml`, written in Hydra's override syntax as for `train.py`
(`top_p=0.9`, `prompt="to be"`, `stop=["\\n\\n"]`). They are parsed with Hydra's override parser but
not composed through Hydra: an inference call writes no run folder, and its keys (e.g. `strategy`) do
not collide with the training config groups of the same names. An unknown or missing key is a
`ConfigError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from minigpt.inference.config import GenerationConfig
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_cli(config_name: str, argv: Sequence[str]) -> DictConfig:
    """`conf/<config_name>.yaml` with `key=value` overrides from the command line applied."""
    cfg = OmegaConf.load(CONF_DIR / f"{config_name}.yaml")
    assert isinstance(cfg, DictConfig)
    try:
        overrides = OverridesParser.create().parse_overrides(list(argv))
    except HydraException as err:
        raise ConfigError(
            f"Cannot parse options {list(argv)}: {err} (write key=value; quote values with '=')."
        ) from err
    for override in overrides:
        key = override.key_or_group
        if key not in cfg.keys():  # (`in cfg` is False for a still-missing ??? value)
            raise ConfigError(f"Unknown option {key!r}; the options are {sorted(cfg)} (see conf/{config_name}.yaml).")
        cfg[key] = override.value()
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"Missing required option(s) {missing}; pass e.g. {missing[0]}=<value>.")
    return cfg


def generation_config(cfg: DictConfig, tokenizer: Tokenizer, extra_stop_tokens: Sequence[int] = ()) -> GenerationConfig:
    """`GenerationConfig` from the flat CLI keys of the same names; generation stops at `<|eos|>`."""
    fields = {f.name for f in dataclasses.fields(GenerationConfig)} - {"stop_tokens", "stop_strings"}
    options = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k in fields}
    stop_tokens = [*extra_stop_tokens, *([tokenizer.eos_id] if tokenizer.eos_id is not None else [])]
    return GenerationConfig(**options, stop_tokens=stop_tokens, stop_strings=list(cfg.get("stop") or []))
