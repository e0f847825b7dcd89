"""Checks of a composed training config that need no data: unset values and values of the wrong type.

Hydra accepts any string on the command line (`trainer.max_steps=abc`): caught here, before anything is
built, with the field, what it expects and an example. (Values left `???` are refused by
`minigpt.cli.command.require_values`, for every command.)
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from minigpt.utils.errors import ConfigError

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
