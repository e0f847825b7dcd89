"""Pipeline parallelism: `strategy=pipeline` on 2 gloo processes, with either schedule, reproduces the
single-process losses, across a checkpoint resume; impossible settings fail before any process starts."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import QUIET_OVERRIDES, compose_config, tiny_run_overrides
from distributed_fixtures import free_port, train_then_resume
from safetensors.torch import load_file

from minigpt.cli.command import user_mistake
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.run import train
from minigpt.scale.memory import STRATEGIES, plan
from minigpt.scale.pipeline import StageModule, cut_model, stage_layers
from minigpt.scale.plan import model_shape
from minigpt.utils.errors import ConfigError

STEPS, BATCH = 4, 4  # every stage reads the same batch; 4 microbatches of 1 sequence
COMMON = (f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}", "optim.warmup_steps=0", "optim.lr=1e-2")
COMMON += ("optim.min_lr_ratio=1.0", f"data.batch_size={BATCH}", "model.n_layer=3")  # 3 blocks: stages of 2 and 1
COMMON += ("optim.optimizer.ns_dtype=float32",)  # Muon in float32: bf16 would round the microbatches' differences up
SCHEDULES = ("gpipe", "1f1b")
# SFT from the pretrained model above, on reversal: the prompt tokens masked, so each microbatch counts a
# different number of tokens; packed rows bring positions and a block-diagonal mask, padded rows vary in length.
SFT = ("stage=sft", "stage.eval_tasks=false", "data=tasks/reversal", "data.tasks.reversal.alphabet=abcdegh",
       "data.num_train=40", "data.num_val=8", "data.num_eval=0")  # fmt: skip
SFT += ("trainer.max_steps=2", "trainer.val_check_interval=2")
SFT_RUNS = {"sft_packed": ("1f1b", "true"), "sft_padded": ("gpipe", "false")}


def _pipeline(schedule: str) -> tuple[str, ...]:
    return ("strategy=pipeline", "trainer.devices=2", "strategy.microbatches=4", f"strategy.schedule={schedule}")


def _sft(tmp_path: Path, folder: str, pack: str, *extra: str) -> list[str]:
    data = [*SFT, f"data.pack={pack}", f"paths.cache_dir={tmp_path / 'cache'}", "trainer.limit_val_batches=2"]
    base = f"init_from={tmp_path / 'single' / 'model'}"
    return [*QUIET_OVERRIDES, *COMMON, *data, base, *_losses(tmp_path / folder), *extra]


def _losses(folder: Path) -> list[str]:
    return ["+callbacks.losses._target_=distributed_fixtures.GlobalLosses", f"+callbacks.losses.folder={folder}"]


def _overrides(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    return [*tiny_run_overrides(tmp_path), *COMMON, *_losses(folder), *extra]


def _rank(rank: int, tmp_path: Path, ports: list[int]) -> None:
    """One of two processes, started the way torchrun would: per schedule, 2 steps, save, resume for 2 more."""
    torch.set_num_threads(1)
    for i, schedule in enumerate(SCHEDULES):
        folder = tmp_path / schedule
        # Validation samples too: the ranks gather the whole model for rank 0 to sample from.
        overrides = _overrides(tmp_path, folder, *_pipeline(schedule), "callbacks.samples.num_samples=1")
        train_then_resume(rank, folder, overrides, (ports[2 * i], ports[2 * i + 1]))
    for i, (name, (schedule, pack)) in enumerate(SFT_RUNS.items(), start=4):
        os.environ.update(MASTER_PORT=str(ports[i]))  # the rest of the torchrun environment is still set
        train(compose_config("train", _sft(tmp_path, name, pack, *_pipeline(schedule)), tmp_path / name))


@pytest.mark.slow
def test_each_schedule_on_two_processes_gives_the_single_process_losses_across_a_resume(tmp_path):
    single = tmp_path / "single"
    for folder in (single, *(tmp_path / s for s in SCHEDULES)):
        folder.mkdir()
    train(compose_config("train", _overrides(tmp_path, single), single))
    for name, (_, pack) in SFT_RUNS.items():
        (tmp_path / f"{name}_single").mkdir()
        (tmp_path / name).mkdir()
        train(compose_config("train", _sft(tmp_path, f"{name}_single", pack), tmp_path / f"{name}_single"))
    mp.spawn(_rank, args=(tmp_path, [free_port() for _ in range(6)]), nprocs=2, join=True)

    want = json.loads((single / "losses.json").read_text())
    assert len(want) == STEPS and want[-1] < want[0]  # it learns
    plain = load_file(single / "model" / "model.safetensors")
    for schedule in SCHEDULES:
        folder = tmp_path / schedule
        got = [json.loads((folder / f"{name}.json").read_text()) for name in ("losses_before_resume", "losses")]
        assert len(got[0]) == 2 and len(got[1]) == 2
        assert got[0] + got[1] == pytest.approx(want, abs=1e-5), schedule  # microbatches move work, not numbers
        assert (folder / "samples.txt").read_text().count("=== step") == 2  # after step 2 and step 4
        gathered = load_file(folder / "model" / "model.safetensors")  # the stages' blocks put together
        assert plain.keys() == gathered.keys()
        for name in plain:
            torch.testing.assert_close(gathered[name], plain[name], atol=1e-5, rtol=1e-4, msg=name)
    for name in SFT_RUNS:  # the masked loss of each microbatch adds up to the batch's mean
        want, got = (json.loads((tmp_path / run / "losses.json").read_text()) for run in (f"{name}_single", name))
        assert len(want) == 2 and got == pytest.approx(want, abs=1e-5), name


def test_stages_split_the_blocks_evenly_and_run_the_whole_model_in_turn(tiny_model):
    assert [list(stage_layers(5, 2, i)) for i in range(2)] == [[0, 1, 2], [3, 4]]
    assert [len(stage_layers(8, 3, i)) for i in range(3)] == [3, 3, 2]
    whole = tiny_model("llama", n_layer=3)  # RoPE in every block, untied head
    stages = [copy.deepcopy(whole) for _ in range(2)]
    for index, stage in enumerate(stages):
        cut_model(stage, index, 2)
    assert list(stages[0].state_dict()) + list(stages[1].state_dict()) == list(whole.state_dict())  # same names
    assert stages[0].lm_head is None and stages[1].tok_emb is None
    idx = torch.randint(0, 64, (2, 10))
    hidden = StageModule(stages[0])(idx)
    torch.testing.assert_close(StageModule(stages[1])(hidden), whole(idx)[0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(("trainer.devices=3", "model.n_layer=2"), "model.n_layer=2 blocks cannot fill them"),
     (("data.batch_size=6", "strategy.microbatches=4"), "strategy.microbatches=4 must divide data.batch_size=6"),
     (("strategy.microbatches=1",), "strategy.schedule=1f1b needs at least one microbatch per stage"),
     (("stage=moe", "model=moe_8x"), "trains stage=pretrain and stage=sft only"),
     (("model=moe_8x",), "runs dense models only")],
)  # fmt: skip
def test_impossible_pipelines_fail_before_any_process_starts(compose_train, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(compose_train("strategy=pipeline", "trainer.devices=2", *overrides))
    assert not torch.distributed.is_initialized()


def test_an_unknown_schedule_is_the_one_sentence_a_user_reads(compose_train):
    with pytest.raises(Exception) as err:  # Hydra wraps what the strategy's constructor raised
        train(compose_train("strategy=pipeline", "trainer.devices=2", "strategy.schedule=zigzag"))
    mistake = user_mistake(err.value)  # what `@command` prints alone, exiting with status 2
    assert isinstance(mistake, ConfigError)
    assert str(mistake) == "strategy.schedule=zigzag is not a pipeline schedule; use gpipe or 1f1b."
    assert not torch.distributed.is_initialized()


def test_planner_pipeline_rows_hold_the_busiest_stage_and_the_microbatches_in_flight():
    config = ModelConfig(n_layer=4, n_head=2, n_embd=64, block_size=32, vocab_size=100)  # tied head
    shape, by_name = model_shape(config), {s.name: s for s in STRATEGIES}
    gpipe, one_f_one_b = (by_name[f"pipeline {s}"] for s in ("gpipe", "1f1b"))
    # The bytes each stage of a cut model holds; the busiest is what the planner reports per GPU.
    held = []
    for index in range(2):
        stage = Transformer(config)
        cut_model(stage, index, 2)
        held.append(sum(p.numel() * p.element_size() for p in stage.parameters()))
    planned = plan(shape, gpipe, 2, "fp32", micro_batch=2, seq_len=32, microbatches=8)
    assert planned.params == pytest.approx(max(held), rel=0.05)
    assert planned.grads == planned.params and planned.optimizer == 2 * planned.params  # Adam: two moments
    ddp = plan(shape, by_name["ddp"], 2, "fp32", micro_batch=2, seq_len=32)
    assert planned.params < 0.75 * ddp.params  # about half the blocks, one table each
    # GPipe keeps all M=8 microbatches' activations; 1F1B at most P=2 on the first stage.
    kept = [plan(shape, s, 2, "fp32", 2, 32, microbatches=8).activations for s in (gpipe, one_f_one_b)]
    assert kept[0] > 3 * kept[1]
    assert plan(shape, one_f_one_b, 1, "fp32", 2, 32, microbatches=1).total == pytest.approx(ddp.total, rel=1e-9)
