"""Shared plumbing of the inference command lines (`generate`, `chat`, `export.hf`): key=value options.

Options are the keys of `conf/<name>.yaml` as Hydra composes it (its defaults list brings the `sampling`
node), written in Hydra's override syntax as for `train.py` (`sampling.top_p=0.9`, `prompt="to be"`,
`sampling.stop_strings=["\\n\\n"]`). Composed with Hydra's compose API, not run under `@hydra.main`: an
inference call writes no run folder. An unknown or missing key is a `ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from minigpt.inference.config import GenerationConfig
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _option_names(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every settable key of `cfg`, nested ones dotted (`sampling.top_p`)."""
    names = []
    for key in cfg.keys():
        value = cfg._get_node(key)
        names += _option_names(value, f"{prefix}{key}.") if isinstance(value, DictConfig) else [f"{prefix}{key}"]
    return names


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Hydra's composition of `conf/<config_name>.yaml` (defaults list included) with `overrides`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def compose_cli(config_name: str, argv: Sequence[str]) -> DictConfig:
    """`conf/<config_name>.yaml` composed by Hydra with `key=value` overrides from the command line applied."""
    try:
        overrides = OverridesParser.create().parse_overrides(list(argv))
    except HydraException as err:
        raise ConfigError(
            f"Cannot parse options {list(argv)}: {err} (write key=value; quote values with '=')."
        ) from err
    options = _option_names(_compose(config_name, []))
    for override in overrides:
        key = override.key_or_group
        if key not in options and not any(name.startswith(f"{key}.") for name in options):
            nested = [name for name in options if name.endswith(f".{key}")]  # e.g. temperature → sampling.temperature
            hint = f"did you mean {nested[0]}?" if nested else f"the options are {options}"
            raise ConfigError(f"Unknown option {key!r}; {hint} (see conf/{config_name}.yaml).")
    try:
        cfg = _compose(config_name, list(argv))
    except HydraException as err:
        raise ConfigError(f"Cannot apply options {list(argv)}: {err}") from err
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"Missing required option(s) {missing}; pass e.g. {missing[0]}=<value>.")
    return cfg


def generation_config(cfg: DictConfig, tokenizer: Tokenizer, extra_stop_tokens: Sequence[int] = ()) -> GenerationConfig:
    """`GenerationConfig` from the command's `sampling` node (+ `num_return_sequences`); stops at `<|eos|>`."""
    options = OmegaConf.to_container(cfg.sampling, resolve=True)
    assert isinstance(options, dict)
    stop_tokens = [*extra_stop_tokens, *([tokenizer.eos_id] if tokenizer.eos_id is not None else [])]
    return GenerationConfig(
        **options, num_return_sequences=cfg.get("num_return_sequences", 1), stop_tokens=stop_tokens
    )
