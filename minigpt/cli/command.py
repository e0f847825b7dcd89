"""One way to start a command: Hydra composes `conf/<name>.yaml`; a user's mistake prints one sentence.

Every entry point (`train.py`, `evaluate.py`, `python -m minigpt.cli.<command>`) is a function of the
composed config, wrapped by `@command("<name>")`. Hydra parses the `key=value` overrides, as for
`train.py`. When the function raises a `ConfigError` (a bad option, a damaged or malformed file) or
Lightning refuses its trainer settings, the message is printed alone to stderr and the process exits
with status 2: the user reads the sentence that says what to fix instead of a traceback wrapped around
it. `HYDRA_FULL_ERROR=1` re-raises the error, so a developer still gets the full trace (the switch Hydra
uses for its own errors); so does a job of a sweep (`-m`), whose failure is the sweeper's to record.
Mistakes in the command line itself (an unknown key, an unknown option of a config group) are Hydra's:
it prints them, also without a traceback, and exits with status 1.

Commands that make no run folder (generate, chat, export …) include `hydra: command` in their defaults
(`conf/hydra/command.yaml`): Hydra then writes nothing and leaves logging alone.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from minigpt.model.config import RENAMED_KEYS
from minigpt.utils.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
USER_ERROR_STATUS = 2
T = TypeVar("T")


def _is_lightning_refusal(err: BaseException) -> bool:
    """Lightning's own "your settings are impossible" error (checked without importing Lightning)."""
    exceptions = sys.modules.get("lightning.fabric.utilities.exceptions")
    return exceptions is not None and isinstance(err, exceptions.MisconfigurationException)


def user_mistake(err: BaseException) -> BaseException | None:
    """The user's mistake behind `err`: `err` itself, or the cause another error wraps it in
    (Hydra's `InstantiationException` wraps what a `_target_` raised); None for a bug."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ConfigError) or _is_lightning_refusal(cause):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__
    return None


def missing_keys(cfg: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """Dotted keys whose value is `???`, found without resolving interpolations.

    (`OmegaConf.missing_keys` resolves them, and a config may hold interpolations into nodes that only
    exist in another command's config, e.g. a data config's `${model.block_size}` in train_tokenizer.)
    """
    found: list[str] = []
    keys = cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg))
    for key in keys:
        dotted = f"{prefix}{key}" if isinstance(cfg, DictConfig) else f"{prefix[:-1]}[{key}]"
        if OmegaConf.is_missing(cfg, key):
            found.append(dotted)
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig | ListConfig) and not OmegaConf.is_interpolation(cfg, key):
            found += missing_keys(node, f"{dotted}.")
    return found


# What to write for a value left as `???`; other fields get `<field>=<value>`.
MISSING_EXAMPLES: dict[str, str] = {
    "data.path": "data.path=prefs.jsonl",
    "data.corpus.paths": "data.corpus.paths='[notes/*.txt]'",
}


def require_values(cfg: DictConfig) -> None:
    """Refuse a config whose required keys (`???` in conf/) were not given, with an example of each."""
    missing = missing_keys(cfg)
    if missing:
        examples = " ".join(MISSING_EXAMPLES.get(key, f"{key}=<value>") for key in missing)
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{', '.join(missing)} {verb} not set; give it on the command line, e.g. {examples}.")


def check_group_choices(args: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Refuse a `group=option` argument whose option does not exist, listing every option, nested ones too.

    Hydra's own message lists only the files directly in the group's folder, so `data=tasks/arithmetic`
    and `data=prompts/sentiment` never appear in it. Sweeps (`model=a,b`) have each option checked.
    """
    for arg in args:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        group = conf_dir / key
        if "." in key or "/" in key or not group.is_dir() or value == "null":
            continue
        for option in value.split(","):
            if not (group / f"{option}.yaml").is_file():
                options = sorted(str(p.relative_to(group).with_suffix("")) for p in group.rglob("*.yaml"))
                raise ConfigError(f"{key}={option} is not an option of {key}/; choose one of: {', '.join(options)}.")


def check_renamed_keys(args: list[str]) -> None:
    """Refuse `model.<old key>=…` of a renamed model field with the new name (Hydra would only say that the
    key is not in the config); older model folders that store the old key still load (`ModelConfig.from_dict`)."""
    for arg in args:
        key = arg.lstrip("+~").split("=", 1)[0]
        old = key.removeprefix("model.")
        if key.startswith("model.") and old in RENAMED_KEYS:
            value = arg.split("=", 1)[1] if "=" in arg else "true"
            raise ConfigError(f"{key} is now model.{RENAMED_KEYS[old]}; write model.{RENAMED_KEYS[old]}={value}.")


def in_sweep() -> bool:
    """True in a job of a multirun (`-m`): there a failed job is the sweeper's to record (Optuna marks the
    trial failed and goes on), so the error is raised to Hydra rather than ending the whole process."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def exit_on_user_mistake(err: Exception) -> None:
    """Print a user's mistake behind `err` alone and exit with status 2; re-raise anything else (a bug), and
    everything under `HYDRA_FULL_ERROR=1` or inside a sweep."""
    mistake = user_mistake(err)
    if mistake is None or os.environ.get("HYDRA_FULL_ERROR") == "1" or in_sweep():
        raise err
    print(f"error: {mistake}", file=sys.stderr)
    raise SystemExit(USER_ERROR_STATUS) from None


def report_user_mistakes(task: Callable[[DictConfig], T]) -> Callable[[DictConfig], T]:
    """`task`, with a user's mistake printed as its message alone and the exit status 2."""

    @functools.wraps(task)
    def guarded(cfg: DictConfig) -> T:
        try:
            require_values(cfg)
            return task(cfg)
        except Exception as err:
            exit_on_user_mistake(err)
            raise  # unreachable: exit_on_user_mistake always raises

    return guarded


def command(config_name: str) -> Callable[[Callable[[DictConfig], T]], Callable[..., Any]]:
    """Decorator: `task(cfg)` becomes the command composing `conf/<config_name>.yaml` from the command line.

    The returned function, called without arguments, parses `sys.argv`; called with a composed config
    (`main(cfg)`, as tests do) it runs the task on it, with the same error reporting.
    """

    def decorate(task: Callable[[DictConfig], T]) -> Callable[..., Any]:
        main = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(
            report_user_mistakes(task)
        )

        @functools.wraps(main)
        def entry(*args: Any) -> Any:
            if not args:  # from the command line: refuse an unknown group option with the full list first
                try:
                    check_group_choices(sys.argv[1:])
                    check_renamed_keys(sys.argv[1:])
                except ConfigError as err:
                    exit_on_user_mistake(err)
            return main(*args)

        return entry

    return decorate
