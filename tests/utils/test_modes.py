"""`eval_mode`: modules in eval mode inside the block, each submodule's own mode restored after, even on error."""

import pytest
from torch import nn

from minigpt.utils.modes import eval_mode


def test_eval_mode_restores_each_submodules_mode_even_when_the_block_raises():
    policy = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    frozen = nn.Linear(2, 2).eval()  # e.g. a reference kept in eval mode inside a training parent
    parent = nn.ModuleDict({"policy": policy, "frozen": frozen}).train()
    frozen.eval()
    before = {name: m.training for name, m in parent.named_modules()}
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(parent):
            assert not any(m.training for m in parent.modules())
            raise RuntimeError("boom")
    assert {name: m.training for name, m in parent.named_modules()} == before
    assert before["policy.1"] and not before["frozen"]  # the restore is per module, not one flag for all


def test_eval_mode_takes_several_modules():
    a, b = nn.Linear(1, 1).train(), nn.Linear(1, 1).eval()
    with eval_mode(a, b):
        assert not a.training and not b.training
    assert a.training and not b.training
