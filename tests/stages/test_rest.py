"""`stage=rest`: ReST-EM raises a toy task's gold score over two iterations; restart_from_base starts every
Improve from the starting weights bit for bit (and `false` from the previous iteration's); every Grow step
is written to the run folder; bad options are refused; a composed run resumes its interrupted iteration."""

from pathlib import Path

import lightning as L
import pytest
import torch
from preference_fixtures import OPTIM, MoreA, base_model_folder

from minigpt.data.prompts import PromptDataModule
from minigpt.evaluation.tasks import evaluate_tasks
from minigpt.model.folder import load_model_folder
from minigpt.rl.grow_file import read_grow_file
from minigpt.stages.inputs import prepare_fit
from minigpt.stages.rest import RestStage
from minigpt.utils.errors import ConfigError

TOY = dict(reward="task", max_new_tokens=6, num_samples=4, grow_prompts=32, improve_steps=15, improve_batch_size=16,
           thresholds=[0.5], eval_prompts=16)  # fmt: skip


def fit_rest(tmp_path: Path, **options) -> tuple[RestStage, dict[str, float]]:
    folder = base_model_folder(tmp_path / "base")
    _, tokenizer = load_model_folder(folder)
    dm = PromptDataModule(tasks={"more_a": MoreA()}, num_train=64, num_val=16, batch_size=16, seed=0)
    dm.attach_tokenizer(tokenizer)
    torch.manual_seed(0)
    stage = RestStage(model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(folder), **{**TOY, **options})
    trainer = L.Trainer(
        max_steps=1000, val_check_interval=1000, check_val_every_n_epoch=None, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=str(tmp_path / "run"),
    )  # fmt: skip
    prepare_fit(stage, dm)
    trainer.fit(stage, datamodule=dm)
    return stage, {k: float(v) for k, v in trainer.callback_metrics.items()}


def greedy_gold(model, tokenizer) -> float:
    return evaluate_tasks(model, tokenizer, {"more_a": MoreA()}, "val", 16)["more_a"]


def test_rest_em_raises_the_gold_score_over_two_iterations(tmp_path):
    stage, metrics = fit_rest(tmp_path, iterations=2)
    run = tmp_path / "run" / "rest"
    scores = [greedy_gold(stage.base, stage.tokenizer)]
    scores += [greedy_gold(*load_model_folder(run / f"iteration_{n}" / "model")) for n in (1, 2)]
    assert scores[0] + 0.3 < scores[1] <= scores[2], scores  # greedy gold of the base, iteration 1, iteration 2
    grown = [read_grow_file(run / f"iteration_{n}" / "grow.jsonl") for n in (1, 2)]
    assert all(len(g) == 32 * 4 for g in grown)  # N replies per Grow prompt, each with its reward
    sampled = [sum(r.gold for r in g) / len(g) for g in grown]
    assert sampled[1] > sampled[0], sampled  # the second Grow step samples from the improved policy
    assert stage.iteration == 2 and metrics["train/iteration"] == 2 and "val/score/more_a" in metrics


@pytest.mark.parametrize("restart", [True, False])
def test_each_improve_starts_from_the_base_weights_or_the_previous_iteration(tmp_path, monkeypatch, restart):
    starts: list[dict[str, torch.Tensor]] = []
    ends: list[dict[str, torch.Tensor]] = []
    start_improve = RestStage.start_improve

    def record_start(self):
        ends.append({k: v.clone() for k, v in self.model.state_dict().items()})  # the weights the Grow step used
        start_improve(self)
        starts.append({k: v.clone() for k, v in self.model.state_dict().items()})

    monkeypatch.setattr(RestStage, "start_improve", record_start)
    stage, _ = fit_rest(tmp_path, iterations=2, improve_steps=3, restart_from_base=restart)
    base = stage.base.state_dict()
    assert len(starts) == 2
    assert all(torch.equal(starts[0][k], base[k]) for k in base)  # iteration 1 always starts from the base
    second_is_base = all(torch.equal(starts[1][k], base[k]) for k in base)
    assert second_is_base == restart
    assert not all(torch.equal(ends[1][k], base[k]) for k in base)  # iteration 2 grew from the trained policy
    if not restart:
        assert all(torch.equal(starts[1][k], ends[1][k]) for k in base)


def test_bad_rest_options_are_refused(tmp_path):
    folder = str(base_model_folder(tmp_path / "base"))

    def build(**options):
        return RestStage(model_config=None, optim=OPTIM, init_from=folder, **options)

    with pytest.raises(ConfigError, match=r"do not rise \(0.7 follows 0.9\)"):
        build(variant="rest", thresholds=[0.5, 0.9, 0.7])
    with pytest.raises(ConfigError, match="rest_em binarises the reward at one threshold"):
        build(thresholds=[0.5, 0.7])
    with pytest.raises(ConfigError, match="stage.variant='em'"):
        build(variant="em")
    rest = build(variant="rest").rest
    assert (rest.thresholds, rest.max_per_prompt, rest.restart_from_base) == ([0.5, 0.7, 0.9], None, False)
    em = build(max_per_prompt=0).rest
    assert (em.thresholds, em.max_per_prompt, em.restart_from_base) == ([1.0], None, True)


def test_a_grow_step_that_keeps_nothing_stops_the_run_naming_threshold_and_best(tmp_path):
    with pytest.raises(ConfigError, match=r"Grow step 1 kept no reply: .*τ=2.0 \(the best scored"):
        fit_rest(tmp_path, iterations=1, thresholds=[2.0])


def test_rest_run_composes_writes_each_iteration_and_resumes_the_interrupted_one(tmp_path, compose_train):
    import shutil

    from rl_fixtures import toy_rl_overrides

    from minigpt.run import train

    overrides = [
        *toy_rl_overrides(tmp_path, "rest"), "stage.thresholds=[1.0]", "stage.num_samples=4", "stage.grow_prompts=8",
        "stage.improve_steps=4", "stage.improve_batch_size=8", "data.batch_size=8", "data.val_fraction=0.1",
        "trainer.val_check_interval=4", "optim.warmup_steps=0", "logger=csv", "trainer.max_steps=20",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match=r"trainer.max_steps=6 is too few .* set trainer.max_steps≥8"):
        train(compose_train(*overrides, "stage.iterations=2", "trainer.max_steps=6", toy_data=False))
    metrics = train(compose_train(*overrides, "stage.iterations=1", toy_data=False))
    run = tmp_path / "run"
    assert metrics["train/iteration"] == 1 and {"val/reward", "val/kl", "grow/kept"} <= set(metrics)
    assert (run / "rest" / "iteration_1" / "model" / "model.safetensors").exists()
    after_one = tmp_path / "after_one.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", after_one)
    # Train on: the second iteration grows from the first one's model.
    train(compose_train(*overrides, "stage.iterations=2", f"ckpt_path={after_one}", toy_data=False))
    second = run / "rest" / "iteration_2"
    written = (second / "grow.jsonl").stat().st_mtime_ns
    # Interrupted after its Grow step: the resume reuses the Grow file and redoes the Improve steps.
    shutil.rmtree(second / "model")
    train(compose_train(*overrides, "stage.iterations=2", f"ckpt_path={after_one}", toy_data=False))
    assert (second / "model" / "model.safetensors").exists() and (second / "grow.jsonl").stat().st_mtime_ns == written
