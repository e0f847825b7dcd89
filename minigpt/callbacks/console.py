"""What a run prints: Lightning's noise filtered, its log lines in `train.log`, a step-based progress bar.

One line per event that matters. Lightning adds adverts ("💡 Tip: …"), a deprecation warning from its
own pytree helper and an "Epoch 0/-2" bar title (MiniGPT trains by steps, `max_epochs=-1`); none of
them helps a user. Lightning also keeps its log lines to itself when it is imported before Hydra sets
up logging, which leaves the run folder's `train.log` empty; `route_lightning_logs` hands them to the
root logger, whose handlers Hydra points at the console and `train.log`.
"""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.callbacks import RichProgressBar

NOISE = ("💡 Tip:",)  # adverts for Lightning's cloud products, printed on every run
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


class DropNoise(logging.Filter):
    """Drop Lightning's advert lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record that is not noise."""
        return not any(marker in record.getMessage() for marker in NOISE)


def route_lightning_logs() -> None:
    """Send Lightning's log lines through the root logger (console and `train.log`), without the noise.

    Lightning gives its loggers (`lightning`, `lightning.pytorch`, `lightning.fabric`) console handlers of
    their own when imported before logging is set up; with Hydra's handlers on the root, those would
    print every line twice and keep it out of `train.log`.
    """
    root = logging.getLogger()
    handlers = list(root.handlers)
    for name in LIGHTNING_LOGGERS:
        lightning_log = logging.getLogger(name)
        if root.handlers:
            for handler in list(lightning_log.handlers):
                lightning_log.removeHandler(handler)
            lightning_log.propagate = True
        handlers += lightning_log.handlers
    for handler in handlers:
        if not any(isinstance(f, DropNoise) for f in handler.filters):
            handler.addFilter(DropNoise())
    # Lightning's own call of a torch API that torch has deprecated; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


class StepProgressBar(RichProgressBar):
    """Rich progress bar titled by what MiniGPT counts, steps, not by an epoch out of `max_epochs - 1`."""

    def _get_train_description(self, current_epoch: int) -> str:
        return "train"
