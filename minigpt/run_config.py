"""Checks of a composed training config that need no data: unset values and values of the wrong type.

Hydra accepts any string on the command line (`trainer.max_steps=abc`), and a `???` value fails only
when something reads it, deep inside instantiation, as `MissingMandatoryValue`. Both are caught here,
before anything is built, with the field, what it expects and an example.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from minigpt.utils.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# field → (expected type, an example value). Null is allowed where the config allows it; other checks
# (positive, ≤ block_size, …) follow in `minigpt.run.validate_config`.
INTEGER, NUMBER, STEPS_OR_FRACTION = "an integer", "a number", "an integer (steps) or a fraction in (0, 1]"
SCHEMA: dict[str, tuple[str, str]] = {
    "seed": (INTEGER, "1337"),
    "trainer.max_steps": (INTEGER, "2000"),
    "trainer.val_check_interval": (STEPS_OR_FRACTION, "250"),
    "trainer.log_every_n_steps": (INTEGER, "10"),
    "trainer.accumulate_grad_batches": (INTEGER, "4"),
    "trainer.num_sanity_val_steps": (INTEGER, "0"),
    "trainer.gradient_clip_val": (NUMBER, "1.0"),
    "optim.lr": (NUMBER, "1e-3"),
    "optim.weight_decay": (NUMBER, "0.1"),
    "optim.warmup_steps": (INTEGER, "100"),
    "model.n_layer": (INTEGER, "4"),
    "model.n_head": (INTEGER, "4"),
    "model.n_embd": (INTEGER, "128"),
    "model.block_size": (INTEGER, "256"),
    "model.dropout": (NUMBER, "0.1"),
    "data.batch_size": (INTEGER, "12"),
    "callbacks.model_checkpoint.every_n_train_steps": (INTEGER, "500"),
    "final_samples": (INTEGER, "2"),
}

# What to write for a value left as `???`; other fields get `<field>=<value>`.
MISSING_EXAMPLES: dict[str, str] = {
    "data.path": "data.path=prefs.jsonl",
    "data.corpus.paths": "data.corpus.paths='[notes/*.txt]'",
}


def _fits(value: object, expected: str) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never to a user
        return False
    if expected == INTEGER:
        return isinstance(value, int)
    if expected == NUMBER:
        return isinstance(value, (int, float))
    return isinstance(value, int) or (isinstance(value, float) and 0.0 < value <= 1.0)


def check_types(cfg: DictConfig) -> None:
    """Raise `ConfigError` for the first field of `SCHEMA` whose value has the wrong type."""
    for field, (expected, example) in SCHEMA.items():
        value = OmegaConf.select(cfg, field, default=None, throw_on_missing=False)
        if value is not None and not _fits(value, expected):
            raise ConfigError(f"{field}={value!r} must be {expected}, e.g. {field}={example}.")


def missing_values_error(cfg: DictConfig) -> None:
    """Raise `ConfigError` naming the first value left unset (`???`), with the option to set and an example."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        field = missing[0]
        example = MISSING_EXAMPLES.get(field, f"{field}=<value>")
        raise ConfigError(f"{field} is not set; give it on the command line, e.g. {example}.")


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
