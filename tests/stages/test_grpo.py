"""`stage=grpo`: a toy reward rises within a few dozen steps; no reference at β = 0 (adapters-off under
LoRA); dynamic sampling drops groups whose rewards are equal; bad options and non-finite rewards are
refused; a composed run trains, resumes and plots."""

import copy
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from preference_fixtures import OPTIM, MoreA, base_model_folder, reward_model_folder
from rl_fixtures import record_aux_losses, rl_run_trains_resumes_and_plots, toy_rl_overrides

from minigpt.data.prompts import PromptDataModule
from minigpt.model.config import ModelConfig, MoEConfig
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.rl.rewards import RewardError
from minigpt.rl.rollout import frozen_logprobs
from minigpt.run import train
from minigpt.stages.grpo import GRPOStage, Scored
from minigpt.stages.inputs import prepare_fit
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError


def prompt_data(tokenizer, batch_size: int = 8) -> PromptDataModule:
    dm = PromptDataModule(tasks={"more_a": MoreA()}, num_train=64, num_val=16, batch_size=batch_size, seed=0)
    dm.attach_tokenizer(tokenizer)
    return dm


def fit_grpo(
    tmp_path: Path, iterations: int, base: Path | None = None, **options
) -> tuple[GRPOStage, dict[str, float]]:
    folder = base or base_model_folder(tmp_path / "base")
    _, tokenizer = load_model_folder(folder)
    dm = prompt_data(tokenizer)
    torch.manual_seed(0)
    defaults = dict(reward="count", count_text="a", max_new_tokens=6, num_generations=4)
    stage = GRPOStage(
        model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(folder), **{**defaults, **options}
    )
    steps = stage.grpo.num_iterations * stage.grpo.num_minibatches  # optimiser steps per iteration
    trainer = L.Trainer(
        max_steps=iterations * steps, val_check_interval=iterations, check_val_every_n_epoch=None, max_epochs=-1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(tmp_path / "run"),
    )  # fmt: skip
    prepare_fit(stage, dm)
    trainer.fit(stage, datamodule=dm)
    return stage, {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_grpo_drives_a_toy_reward_up(tmp_path):
    # 8 prompts × 4 replies per iteration; the reward counts the letter `a` in the reply.
    stage, metrics = fit_grpo(tmp_path, 20)
    assert metrics["val/reward"] > metrics["val/reward_init"] + 1.0, metrics
    assert metrics["val/kl"] > 0 and stage.reference is not None
    assert {"train/clip_low", "train/clip_high", "train/entropy", "train/frac_reward_zero_std",
            "train/tokens_per_s", "time/generate", "time/score", "time/optimise"} <= set(metrics)  # fmt: skip
    rows = json.loads(next((tmp_path / "run" / "samples").glob("*.json")).read_text())
    assert len(rows) == 8 and {"prompt", "reply", "reward", "gold"} <= set(rows[0])


def test_constitution_reward_takes_the_runs_judges_and_truth_weight(tmp_path):
    """RL-CAI (docs/safety.md): `stage.reward=constitution stage.truth_weight=w` reaches the reward built with the
    data's tasks and the run's constitution, so a stricter critic (a reply owes the prompt's sum) is the reward."""
    from minigpt.alignment.constitution import build_constitution
    from minigpt.alignment.feedback import ConstitutionReward

    strict = build_constitution(
        [{"name": "true_arithmetic", "critique": "{evidence}", "revision": "redact",
          "judge": {"_target_": "minigpt.alignment.judges.ArithmeticJudge", "answer_required": True}}]
    )  # fmt: skip
    stage, _ = fit_grpo(tmp_path, 1, reward="constitution", truth_weight=0.5, constitution=strict)
    assert isinstance(stage.reward_fn, ConstitutionReward) and stage.reward_fn.truth_weight == 0.5
    assert stage.reward_fn.constitution is strict and set(stage.reward_fn.tasks) == {"more_a"}
    # The hack a lenient judge leaves open — dropping the claim ("27 is 28") — now costs as much as a false sum.
    rewards = stage.reward_fn(["check 27 plus 31 is 60"] * 3, ["27 is 28", "27 plus 31 is 60", "58"], [None] * 3)
    assert rewards.tolist() == [-1.0, -1.0, 0.5]


def test_beta_zero_builds_no_reference_model(tmp_path):
    folder = str(base_model_folder(tmp_path / "base"))
    common = dict(model_config=None, optim=OPTIM, init_from=folder, reward="count", count_text="a")
    without = GRPOStage(**common, beta=0.0)
    assert without.reference is None and not without.has_reference()
    assert sum(isinstance(m, Transformer) for m in without.modules()) == 1  # the policy alone
    with_kl = GRPOStage(**common, beta=0.04)
    assert sum(isinstance(m, Transformer) for m in with_kl.modules()) == 2  # policy and frozen reference


def test_lora_policy_uses_adapters_off_as_its_reference(tmp_path):
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["qkv", "proj", "fc"]}
    stage, _ = fit_grpo(tmp_path, 3, lora=lora, beta=0.04)
    assert stage.reference is None and stage.has_reference()
    assert sum(isinstance(m, Transformer) for m in stage.modules()) == 1  # no copy of the policy
    rollout = scored_batch(stage, [0.0] * 8).rollout
    policy = frozen_logprobs(stage.model, rollout)
    with stage.reference_model() as reference:
        ref = frozen_logprobs(reference, rollout)
    # The adapters moved the policy; switched off, the model is the base model: the same as zeroing them.
    assert not torch.allclose(policy, ref)
    # Only the adapters train (and the embedding rows of the chat tokens this base model lacked).
    assert all("lora_" in n or n == "tok_emb.weight" for n, p in stage.model.named_parameters() if p.requires_grad)
    zeroed = copy.deepcopy(stage.model)
    with torch.no_grad():
        for name, param in zeroed.named_parameters():
            if "lora_B" in name:
                param.zero_()
    torch.testing.assert_close(ref, frozen_logprobs(zeroed, rollout))


def scored_batch(stage: GRPOStage, rewards: list[float]) -> Scored:
    prompts = [f"say: {w}" for w in ("ab", "cd", "ba", "dc")][: len(rewards) // stage.grpo.num_generations]
    batch = {"prompt": prompts, "prompt_ids": None, "task": [None] * len(prompts)}
    rollout = stage.rollout(batch, stage.grpo.num_generations)
    return Scored(rollout, torch.tensor(rewards), None)


def test_dynamic_sampling_drops_groups_whose_rewards_are_equal(tmp_path):
    folder = str(base_model_folder(tmp_path / "base"))
    stage = GRPOStage(model_config=None, optim=OPTIM, init_from=folder, reward="count", count_text="a",
                      num_generations=4, max_new_tokens=4, dynamic_sampling=True, max_sampling_tries=3)  # fmt: skip
    # Batch 1: group 0 all equal (dropped), group 1 informative. One group of the two wanted: wait.
    first = scored_batch(stage, [1, 1, 1, 1, 0, 1, 0, 0])
    assert stage.collect(first, target_groups=2) is None
    # Batch 2: group 0 informative, group 1 all equal: two informative groups, the update goes ahead.
    second = scored_batch(stage, [2, 0, 0, 0, 3, 3, 3, 3])
    ready = stage.collect(second, target_groups=2)
    assert ready is not None and ready.rewards.tolist() == [0, 1, 0, 0, 2, 0, 0, 0]
    assert len(ready.rollout) == 8 and stage.pending == [] and stage.tries == 0
    # The merged batch is laid out again: each row scores as it did in its own batch.
    assert ready.rollout.completions == first.rollout.completions[4:] + second.rollout.completions[:4]

    def reply_logprob(rollout):
        return frozen_logprobs(stage.model, rollout).sum(dim=1)

    expected = torch.cat([reply_logprob(first.rollout)[4:], reply_logprob(second.rollout)[:4]])
    torch.testing.assert_close(reply_logprob(ready.rollout), expected, rtol=1e-4, atol=1e-4)
    # Tries run out with one informative group: the most recent dropped group tops the batch up.
    assert stage.collect(scored_batch(stage, [1, 1, 1, 1, 5, 5, 5, 5]), target_groups=2) is None
    assert stage.collect(scored_batch(stage, [7, 7, 7, 7, 8, 8, 8, 8]), target_groups=2) is None
    ready = stage.collect(scored_batch(stage, [0, 0, 1, 0, 9, 9, 9, 9]), target_groups=2)
    assert ready is not None and ready.rewards.tolist() == [0, 0, 1, 0, 9, 9, 9, 9]


def test_dapo_switches_train_with_dynamic_sampling_and_reused_rollouts(tmp_path):
    options = dict(loss_type="dapo", epsilon_high=0.28, dynamic_sampling=True, overlong="penalty",
                   overlong_cache=2, num_iterations=2, num_minibatches=2, micro_batch_size=8, beta=0.0)  # fmt: skip
    stage, metrics = fit_grpo(tmp_path, 3, **options)
    assert stage.reference is None and metrics["train/iteration"] == 3
    assert metrics["train/clip_low"] + metrics["train/clip_high"] >= 0 and "train/sampling_tries" in metrics


@pytest.mark.parametrize("variant", [dict(advantage="rloo"), dict(advantage="reinforce_pp"),
                                     dict(loss_type="dr_grpo", scale_rewards="none")])  # fmt: skip
def test_other_variants_train(tmp_path, variant):
    _, metrics = fit_grpo(tmp_path, 2, **variant)
    assert metrics["train/iteration"] == 2 and torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_moe_policy_adds_its_auxiliary_loss(tmp_path, monkeypatch):
    base = base_model_folder(tmp_path / "moe", moe=MoEConfig(num_experts=4, top_k=2))
    aux_losses = record_aux_losses(monkeypatch, GRPOStage)
    _, metrics = fit_grpo(tmp_path, 2, base=base)
    assert metrics["train/iteration"] == 2 and aux_losses and all(float(a) > 0 for a in aux_losses)


def test_bad_grpo_options_are_refused_before_training(tmp_path):
    base = base_model_folder(tmp_path / "base")
    common = dict(model_config=None, optim=OPTIM, init_from=str(base), reward="count", count_text="a")
    with pytest.raises(ConfigError, match="stage.num_generations=1"):
        GRPOStage(**common, num_generations=1)
    with pytest.raises(ConfigError, match="stage.epsilon_high=0.1 is below stage.epsilon=0.2"):
        GRPOStage(**common, epsilon=0.2, epsilon_high=0.1)
    with pytest.raises(ConfigError, match="stage.loss_type='bogus'"):
        GRPOStage(**common, loss_type="bogus")
    # A reward model whose tokenizer is not the policy's.
    other = CharTokenizer.train("xyz0123: ")
    folder = save_model_folder(
        tmp_path / "other", Transformer(ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=32,
                                                    vocab_size=other.vocab_size)), other)  # fmt: skip
    rm = reward_model_folder(tmp_path / "rm", folder)
    with pytest.raises(ConfigError, match="another tokenizer than the policy"):
        GRPOStage(**{**common, "reward": "model"}, reward_model=str(rm))


def test_a_reward_model_scores_the_groups_and_never_changes(tmp_path):
    rm = reward_model_folder(tmp_path / "rm", base_model_folder(tmp_path / "base"))
    stage, metrics = fit_grpo(tmp_path, 2, reward="model", reward_model=str(rm))
    assert metrics["train/iteration"] == 2 and "val/reward" in metrics and "val/gold" in metrics
    assert sum(isinstance(m, Transformer) for m in stage.modules()) == 3  # policy, reference, reward model
    saved = load_model_folder(rm)[0].state_dict()
    for name, value in stage.reward_fn.model.trunk.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)


def nan_for_b(prompts: list[str], completions: list[str], tasks: list) -> list[float]:
    return [float("nan") if "b" in c else 1.0 for c in completions]


def test_a_nan_reward_stops_the_run_naming_the_prompt_and_reply(tmp_path):
    with pytest.raises(RewardError, match=r"The reward of the reply '.*b.*' to the prompt 'say: .*' is nan"):
        fit_grpo(tmp_path, 2, reward=nan_for_b)


def test_grpo_run_composes_trains_resumes_and_plots(tmp_path, compose_train, compose_eval):
    rl_run_trains_resumes_and_plots(
        tmp_path, compose_train, compose_eval, "grpo", 1, "data.batch_size=4", "stage.num_generations=4"
    )


@pytest.mark.parametrize("experiment, loss_type", [("grpo_arithmetic", "grpo"), ("grpo_dapo_arithmetic", "dapo")])
def test_grpo_experiment_recipes_compose(compose_train, experiment, loss_type):
    cfg = compose_train(f"experiment={experiment}", toy_data=False)
    assert cfg.stage._target_ == "minigpt.stages.grpo.GRPOStage" and cfg.stage.reward == "task"
    assert cfg.stage.loss_type == loss_type and cfg.stage.num_generations == 8
    assert cfg.data._target_ == "minigpt.data.prompts.PromptDataModule"


class RankRecord(L.Callback):
    """Each rank writes its first batch's prompts and its flattened parameters before and after training."""

    def __init__(self, folder: str) -> None:
        self.folder, self.prompts, self.start = folder, None, None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = torch.cat([p.detach().flatten() for p in pl_module.model.parameters()])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, *args) -> None:
        self.prompts = self.prompts or list(batch["prompt"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        flat = torch.cat([p.detach().flatten() for p in pl_module.model.parameters()])
        record = {"prompts": self.prompts, "start": self.start, "weights": flat}
        torch.save(record, Path(self.folder) / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_grpo_under_ddp_spawn_samples_different_prompts_and_keeps_ranks_identical(compose_train, tmp_path):
    cfg = compose_train(
        *toy_rl_overrides(tmp_path, "grpo"), "data.batch_size=2", "stage.num_generations=4",
        "stage.dynamic_sampling=true", "strategy=ddp_spawn", "trainer.devices=2", "trainer.max_steps=3",
        "trainer.val_check_interval=2", f"+callbacks.ranks._target_={__name__}.RankRecord",
        f"+callbacks.ranks.folder={tmp_path}", toy_data=False,
    )  # fmt: skip
    train(cfg)
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0["prompts"] != rank1["prompts"]  # the distributed sampler split the prompts
    assert not torch.equal(rank0["weights"], rank0["start"])  # it trained
    assert torch.equal(rank0["weights"], rank1["weights"])  # gradients all-reduced; updates taken together
