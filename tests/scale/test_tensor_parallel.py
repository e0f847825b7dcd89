"""Tensor parallelism: `strategy=tensor_parallel` on 2 gloo processes reproduces the single-process losses
and weights, across a checkpoint resume; a degree that cannot split the model fails before any process starts."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
from conftest import compose_config, tiny_run_overrides
from distributed_fixtures import free_port, train_then_resume
from safetensors.torch import load_file
from torch.distributed.tensor import DTensor

from minigpt.model.config import ModelConfig
from minigpt.run import train
from minigpt.scale.memory import STRATEGIES, plan
from minigpt.scale.plan import model_shape
from minigpt.scale.tensor_parallel import check_model, clip_grad_norm, qkv_row_order
from minigpt.utils.errors import ConfigError

STEPS, BATCH = 4, 4  # every rank of the tensor-parallel axis reads the same batch
COMMON = (
    "optim=adamw",
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STEPS}",
    "optim.warmup_steps=0",
    "optim.lr=1e-2",
)
COMMON += ("optim.min_lr_ratio=1.0", f"data.batch_size={BATCH}")  # constant lr: 2 + 2 steps see the 4-step rates
# Llama-style blocks (SwiGLU: gate and up both column-parallel; 4 query heads sharing 2 key/value heads).
TENSOR_PARALLEL = next(s for s in STRATEGIES if s.name == "tensor_parallel")
LLAMA = ("model.activation=swiglu", "model.n_head=4", "model.n_kv_head=2", "model.norm=rmsnorm", "model.bias=false")


class VocabRows(L.Callback):
    """Rank 0 writes the vocabulary rows its head and embedding hold, after the first step, to `vocab_rows.json`."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        model = pl_module.model
        if batch_idx == 0 and trainer.is_global_zero and isinstance(model.lm_head.weight, DTensor):
            rows = {
                "vocab": model.config.vocab_size,
                "head": model.lm_head.weight.to_local().shape[0],
                "tied": model.lm_head.weight is model.tok_emb.weight,
            }
            (Path(self.folder) / "vocab_rows.json").write_text(json.dumps(rows))


def _overrides(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    callbacks = [
        f"+callbacks.{name}._target_={cls}"
        for name, cls in (
            ("losses", "distributed_fixtures.GlobalLosses"),
            ("rows", f"{__name__}.VocabRows"),
            ("held", "distributed_fixtures.StateBytes"),
        )
    ]
    callbacks += [f"+callbacks.{name}.folder={folder}" for name in ("losses", "rows", "held")]
    return [*tiny_run_overrides(tmp_path), *COMMON, *LLAMA, *callbacks, *extra]


def _rank(rank: int, tmp_path: Path, ports: list[int]) -> None:
    """One of two processes, started the way torchrun would: 2 steps, save, resume for the other 2."""
    torch.set_num_threads(1)
    folder = tmp_path / "tp"
    # Validation samples too: generating through split layers is a collective that every rank joins.
    overrides = _overrides(
        tmp_path, folder, "strategy=tensor_parallel", "trainer.devices=2", "callbacks.samples.num_samples=1"
    )
    train_then_resume(rank, folder, overrides, (ports[0], ports[1]))


@pytest.mark.slow
def test_tensor_parallel_on_two_processes_gives_the_single_process_losses_across_a_resume(tmp_path):
    single, tp = tmp_path / "single", tmp_path / "tp"
    single.mkdir(), tp.mkdir()
    train(compose_config("train", _overrides(tmp_path, single), single))
    mp.spawn(_rank, args=(tmp_path, [free_port() for _ in range(2)]), nprocs=2, join=True)

    want = json.loads((single / "losses.json").read_text())
    assert len(want) == STEPS and want[-1] < want[0]  # it learns
    got = [json.loads((tp / f"{name}.json").read_text()) for name in ("losses_before_resume", "losses")]
    assert len(got[0]) == 2 and len(got[1]) == 2
    assert got[0] + got[1] == pytest.approx(want, abs=1e-5)  # splitting heads moves work, not numbers
    # The vocabulary was split: rank 0 held ⌈V/2⌉ rows of the one (tied) embedding/head matrix, and the
    # cross-entropy above ran on vocabulary-sharded logits.
    rows = json.loads((tp / "vocab_rows.json").read_text())
    assert rows == {"vocab": rows["vocab"], "head": -(-rows["vocab"] // 2), "tied": True}
    # The planner's tensor-parallel row is what each rank holds (norms whole, matrices and vocabulary halved).
    held = [json.loads((tp / f"bytes{rank}.json").read_text()) for rank in (0, 1)]
    planned = plan(
        model_shape(ModelConfig.load(single / "model" / "config.json")), TENSOR_PARALLEL, 2, "fp32", BATCH, 32
    )
    for kind in ("params", "grads", "optimizer"):
        assert (held[0][kind] + held[1][kind]) / 2 == pytest.approx(getattr(planned, kind), rel=0.05), kind
    assert (tp / "samples.txt").read_text().count("=== step") == 2  # after step 2 and step 4
    # The exported model is the plain one: the qkv rows reordered for sharding are put back.
    plain, gathered = (load_file(folder / "model" / "model.safetensors") for folder in (single, tp))
    assert plain.keys() == gathered.keys()
    # 1e-4 rather than the losses' 1e-5: the sharded cross-entropy sums the exponentials in another order,
    # and Adam's m/√v turns those float-rounding differences of near-zero gradients into update differences
    # of up to ~1e-5 (measured: 1.6e-5 at most, on weights that moved by ~1e-2 in 4 steps of lr 1e-2).
    for name in plain:
        torch.testing.assert_close(gathered[name], plain[name], atol=1e-4, rtol=1e-4, msg=name)


def test_qkv_row_order_gives_each_rank_its_own_heads():
    config = ModelConfig(vocab_size=16, n_layer=1, n_head=4, n_kv_head=2, n_embd=8)  # head_dim 2: q 8, k 4, v 4
    rows = qkv_row_order(config, 2).tolist()
    # rank 0: q heads 0-1, k head 0, v head 0; rank 1: q heads 2-3, k head 1, v head 1
    assert rows == [0, 1, 2, 3, 8, 9, 12, 13, 4, 5, 6, 7, 10, 11, 14, 15]


@pytest.mark.parametrize(
    ("sizes", "field"),
    [(dict(n_head=3, n_embd=24), "n_head=3"), (dict(n_head=4, n_kv_head=1), "n_kv_head=1"),
     (dict(n_head=2, mlp_hidden=51), "mlp_hidden=51")],
)  # fmt: skip
def test_a_degree_that_does_not_divide_the_model_is_refused(sizes, field):
    config = ModelConfig(**{"vocab_size": 16, "n_layer": 1, "n_embd": 16, **sizes})
    with pytest.raises(ConfigError, match=f"must divide model.{field}"):
        check_model(config, 2)
    check_model(config, 1)  # one process splits nothing


def test_train_refuses_an_indivisible_degree_before_any_process_starts(compose_train):
    cfg = compose_train("strategy=tensor_parallel", "trainer.devices=2", "model.n_head=1")
    with pytest.raises(ConfigError, match="must divide model.n_head=1"):
        train(cfg)


def test_clip_grad_norm_of_replicated_gradients_is_torchs():
    grads = [torch.randn(3, 4) * 5, torch.randn(7)]
    mine, theirs = ([torch.nn.Parameter(torch.zeros_like(g)) for g in grads] for _ in range(2))
    for params in (mine, theirs):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
    norm = clip_grad_norm(mine, 1.0)
    assert norm == pytest.approx(float(torch.nn.utils.clip_grad_norm_(theirs, 1.0)))
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
