"""`eval_mode(*modules)`: modules in eval mode inside a block, each restored to its own mode after.

Sampling, scoring with a frozen model and measuring must not run dropout or update running statistics,
but the module may be in the middle of training: the caller's mode is put back on the way out, also
when the block raises (a failed rollout must not leave the policy training without dropout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Switch every module in `modules` (and its children) to eval mode for the block, then restore.

    Each submodule's own `training` flag is restored, not one flag for the whole tree: a frozen child
    kept in eval mode inside a training parent (a PPO reference) stays in eval mode afterwards.
    """
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training
