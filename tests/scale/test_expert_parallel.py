"""Expert parallelism: `strategy=expert_parallel` on 2 gloo processes, each holding half the experts and reading
its own batch, reproduces the single-process losses and weights on the global batch across a checkpoint resume;
impossible splits fail before any process starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import compose_config, tiny_run_overrides
from distributed_fixtures import free_port, train_then_resume
from safetensors.torch import load_file

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.run import train
from minigpt.scale.expert_parallel import ExpertParallelMoELayer, _rank_within_group
from minigpt.scale.memory import STRATEGIES, plan
from minigpt.scale.plan import model_shape
from minigpt.utils.errors import ConfigError

EXPERT_PARALLEL = next(s for s in STRATEGIES if s.name == "expert_parallel")
STEPS, BATCH = 4, 4  # per rank; the single process takes both ranks' samples in one batch of 2·BATCH
COMMON = (f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}", "optim.warmup_steps=0", "optim.lr=1e-2")
COMMON += ("optim.min_lr_ratio=1.0",)  # constant lr: 2 + 2 steps see the 4-step rates
COMMON += ("optim=adamw",)  # the planner's bytes are Adam's two moments per parameter
# A tiny top-2 MoE with 4 experts (2 per rank); a large balancing coefficient makes a wrong (per-rank)
# balancing loss show in the losses, and gradient clipping at 0.1 makes a wrong (per-rank) norm show too.
MOE = ("model=moe_8x", "model.moe.num_experts=4", "model.moe.expert_hidden=32", "model.moe.aux_loss_coef=0.5")
MOE += ("model.moe.z_loss_coef=0.01", "trainer.gradient_clip_val=0.1")


def _overrides(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    callbacks = [
        f"+callbacks.{name}._target_=distributed_fixtures.{cls}"
        for name, cls in (("losses", "GlobalLosses"), ("held", "StateBytes"))
    ]
    callbacks += [f"+callbacks.{name}.folder={folder}" for name in ("losses", "held")]
    return [*tiny_run_overrides(tmp_path), *COMMON, *MOE, *callbacks, *extra]


def _rank(rank: int, tmp_path: Path, ports: list[int]) -> None:
    """One of two processes, started the way torchrun would: 2 steps, save, resume for the other 2."""
    torch.set_num_threads(1)
    folder = tmp_path / "ep"
    # Validation samples too: the ranks gather the experts and rank 0 samples from a plain copy.
    overrides = _overrides(
        tmp_path, folder, "strategy=expert_parallel", "trainer.devices=2", f"data.batch_size={BATCH}",
        "callbacks.samples.num_samples=1",
    )  # fmt: skip
    train_then_resume(rank, folder, overrides, (ports[0], ports[1]))


@pytest.mark.slow
def test_expert_parallel_on_two_processes_gives_the_single_process_losses_across_a_resume(tmp_path):
    single, ep = tmp_path / "single", tmp_path / "ep"
    single.mkdir(), ep.mkdir()
    train(compose_config("train", _overrides(tmp_path, single, f"data.batch_size={2 * BATCH}"), single))
    mp.spawn(_rank, args=(tmp_path, [free_port() for _ in range(2)]), nprocs=2, join=True)

    want = json.loads((single / "losses.json").read_text())
    assert len(want) == STEPS and want[-1] < want[0]  # it learns
    got = [json.loads((ep / f"{name}.json").read_text()) for name in ("losses_before_resume", "losses")]
    assert len(got[0]) == 2 and len(got[1]) == 2
    assert got[0] + got[1] == pytest.approx(want, abs=1e-5)  # the experts moved, the numbers did not
    assert (ep / "samples.txt").read_text().count("=== step") == 2  # after step 2 and step 4
    # The model folder is a plain one with all 4 experts, equal to the single-process weights: the
    # experts' gradients were scaled to the global mean and their Adam moments survived the resume.
    plain, gathered = (load_file(folder / "model" / "model.safetensors") for folder in (single, ep))
    assert plain.keys() == gathered.keys()
    assert gathered["blocks.0.ffn.experts.w_in"].shape[0] == 4
    for name in plain:
        torch.testing.assert_close(gathered[name], plain[name], atol=1e-5, rtol=1e-4, msg=name)
    # The planner's expert-parallel row is what each rank holds: half the experts, all the rest.
    held = [json.loads((ep / f"bytes{rank}.json").read_text()) for rank in (0, 1)]
    planned = plan(
        model_shape(ModelConfig.load(single / "model" / "config.json")), EXPERT_PARALLEL, 2, "fp32", BATCH, 32
    )
    for kind in ("params", "grads", "optimizer"):
        assert held[0][kind] == held[1][kind] == pytest.approx(getattr(planned, kind), rel=0.05), kind


def test_rows_are_placed_per_group_in_order():
    # rows of groups 1, 0, 1, 1, 0 → places 0, 0, 1, 2, 1 and sizes 2, 3
    place, sizes = _rank_within_group(torch.tensor([1, 0, 1, 1, 0]), 2)
    assert place.tolist() == [0, 0, 1, 2, 1] and sizes.tolist() == [2, 3]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("model=gpt_nano",), "needs a mixture-of-experts model"),
        (("model.moe.num_experts=2", "trainer.devices=4"), "more ranks than model.moe.num_experts=2"),
        (("model.moe.num_experts=4", "trainer.devices=3"), "must divide model.moe.num_experts=4"),
        (("model.moe.router=expert_choice", "model.moe.capacity_factor=1.0"), "routes by token choice only"),
    ],
)
def test_train_refuses_an_impossible_split_before_any_process_starts(compose_train, overrides, message):
    cfg = compose_train("model=moe_8x", "strategy=expert_parallel", "trainer.devices=2", *overrides)
    with pytest.raises(ConfigError, match=message):
        train(cfg)


def test_a_split_layer_counts_the_flops_of_the_whole_layer():
    config = ModelConfig.from_dict(
        dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=20, moe=dict(num_experts=4, top_k=2))
    )
    whole = Transformer(config)
    split = Transformer(config)
    layer = split.blocks[0].ffn
    split.blocks[0].ffn = ExpertParallelMoELayer.from_layer(layer, config, rank=1, world=2, group=None)
    assert split.num_params() < whole.num_params()  # this rank holds 2 of the 4 experts
    assert split.flops_per_token(8) == whole.flops_per_token(8)  # a token still visits 2 of all 4
