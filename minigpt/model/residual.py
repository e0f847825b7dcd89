"""Which linear layers write into the residual stream, so that their initialisation can be scaled.

The residual stream adds two projections per block (attention's output and the feed-forward's), so its
variance grows with depth; GPT-2 (Radford et al. 2019, §2.3) scales those weights' init by 1/√N, N the
number of residual additions. A layer is marked where it is built and `Transformer._init_weights` reads
the mark; the mark is a plain attribute, so the module's class, state dict and peft's view of it stay
those of an `nn.Linear`.
"""

from __future__ import annotations

from torch import nn

_MARK = "residual_projection"


def mark_residual_projection(linear: nn.Linear) -> nn.Linear:
    """Mark `linear` as a projection into the residual stream; returns it."""
    # setattr: nn.Module's typed __setattr__ admits only tensors and modules, though any value works.
    setattr(linear, _MARK, True)
    return linear


def is_residual_projection(module: nn.Module) -> bool:
    """Whether `mark_residual_projection` marked `module`."""
    return getattr(module, _MARK, False)
