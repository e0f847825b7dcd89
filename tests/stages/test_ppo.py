"""`stage=ppo`: a toy reward is driven up within a few dozen iterations; the reference and reward models
never change; critic warm-up, a shared trunk and bad options; a composed run that trains, resumes, plots."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from preference_fixtures import OPTIM, MoreA, base_model_folder, reward_model_folder
from rl_fixtures import record_aux_losses, rl_run_trains_resumes_and_plots

from minigpt.data.prompts import PromptDataModule
from minigpt.model.config import MoEConfig
from minigpt.model.folder import load_model_folder
from minigpt.model.heads import load_reward_model
from minigpt.rl.rewards import ModelReward, build_reward
from minigpt.run import train
from minigpt.stages.inputs import prepare_fit
from minigpt.stages.ppo import PPOStage
from minigpt.utils.errors import ConfigError


class TableLogger(Logger):
    """Keeps what `log_table` receives, as W&B's logger would show it."""

    name, version = "tables", 0

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[str], list[list]]] = []

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: object) -> None:
        pass

    def log_table(self, key: str, columns: list[str], data: list[list]) -> None:
        self.tables.append((key, columns, data))


def fit_ppo(
    tmp_path: Path, iterations: int, base: Path | None = None, logger: Logger | bool = False, **options
) -> tuple[PPOStage, dict[str, float]]:
    folder = base or base_model_folder(tmp_path / "base")
    _, tokenizer = load_model_folder(folder)
    dm = PromptDataModule(tasks={"more_a": MoreA()}, num_train=64, num_val=16, batch_size=16, seed=0)
    dm.attach_tokenizer(tokenizer)
    torch.manual_seed(0)
    defaults = dict(reward="count", count_text="a", max_new_tokens=6, missing_eos_penalty=0.0)
    stage = PPOStage(
        model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(folder), **{**defaults, **options}
    )
    prepare_fit(stage, dm)
    # Lightning counts every optimiser step: actor and critic per minibatch, the critic alone in warm-up.
    minibatch_steps = stage.ppo.ppo_epochs * stage.ppo.num_minibatches
    warmup = min(stage.ppo.critic_warmup, iterations)
    trainer = L.Trainer(
        max_steps=(2 * iterations - warmup) * minibatch_steps, val_check_interval=iterations,
        check_val_every_n_epoch=None,
        max_epochs=-1, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path / "run"),
    )  # fmt: skip
    trainer.fit(stage, datamodule=dm)
    return stage, {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_ppo_drives_a_toy_reward_up(tmp_path):
    tables = TableLogger()
    stage, metrics = fit_ppo(tmp_path, 15, logger=tables)
    assert metrics["val/reward"] > metrics["val/reward_init"] + 1.0, metrics
    assert metrics["val/kl"] > 0
    key, columns, rows = tables.tables[-1]  # the validation's samples table, with each reply's reward
    assert key == "val/samples" and columns == ["prompt", "reply", "reward", "gold"] and len(rows) == 8
    assert [r["reward"] for r in json.loads(next((tmp_path / "run" / "samples").glob("*.json")).read_text())] == [
        row[2] for row in rows
    ]


@pytest.mark.slow
def test_ppo_with_compiled_rollouts_drives_the_toy_reward_up(tmp_path):
    # The compiled decoding step must follow the policy's weights as they train between rollouts.
    stage, metrics = fit_ppo(tmp_path, 15, compile_rollouts=True)
    assert stage.ppo.generation().compile
    assert metrics["val/reward"] > metrics["val/reward_init"] + 1.0, metrics


def test_reference_and_reward_model_never_change_while_policy_and_critic_train(tmp_path):
    rm = reward_model_folder(tmp_path / "rm", base_model_folder(tmp_path / "base"))
    stage, metrics = fit_ppo(tmp_path, 3, reward="model", reward_model=str(rm))
    assert "val/reward" in metrics and "val/gold" in metrics
    base, _ = load_model_folder(tmp_path / "base")
    reference = stage.reference.state_dict()
    for name, value in base.state_dict().items():
        rows = value.shape[0] if name.startswith(("tok_emb", "lm_head")) else None  # grown for chat tokens
        torch.testing.assert_close(reference[name][:rows], value, rtol=0, atol=0)
    saved = load_reward_model(rm).model.state_dict()
    for name, value in stage.reward_fn.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    assert not any(p.requires_grad for p in [*stage.reference.parameters(), *stage.reward_fn.parameters()])
    # The critic started as a copy of the reward model (critic_init=auto) and trained; so did the policy.
    critic = stage.critic.state_dict()
    assert any(not torch.equal(critic[f"trunk.{n}"], v) for n, v in stage.reward_fn.model.trunk.state_dict().items())
    assert any(not torch.equal(v, reference[n]) for n, v in stage.model.state_dict().items())


def test_critic_warmup_freezes_the_actor(tmp_path):
    stage, _ = fit_ppo(tmp_path, 2, critic_warmup=2, critic_init="policy")
    for name, value in stage.model.state_dict().items():
        torch.testing.assert_close(value, stage.reference.state_dict()[name], rtol=0, atol=0)
    head = stage.critic.head.proj.weight
    assert head.abs().sum() > 0  # the zero-initialised value head learned


def test_shared_trunk_ptx_and_adaptive_kl(tmp_path):
    options = dict(share_trunk=True, micro_batch_size=4, ptx_coef=0.5, kl_target=0.01, kl_estimator="k3")
    stage, metrics = fit_ppo(tmp_path, 2, **options)
    assert stage.critic is None and stage.value_head.proj.weight.abs().sum() > 0
    assert metrics["train/iteration"] == 2 and metrics["train/ptx_loss"] > 0
    assert metrics["train/kl_coef"] != stage.ppo.kl_coef  # adapted towards the target


def test_moe_policy_adds_its_auxiliary_loss(tmp_path, monkeypatch):
    base = base_model_folder(tmp_path / "moe", moe=MoEConfig(num_experts=4, top_k=2))
    aux_losses = record_aux_losses(monkeypatch, PPOStage)
    stage, metrics = fit_ppo(tmp_path, 2, base=base, critic_init="policy")
    assert metrics["train/iteration"] == 2 and aux_losses and all(float(a) > 0 for a in aux_losses)


def test_bad_ppo_options_are_refused(tmp_path):
    folder = str(base_model_folder(tmp_path / "base"))
    common = dict(model_config=None, optim=OPTIM, init_from=folder)
    with pytest.raises(ConfigError, match="stage.reward_model"):
        PPOStage(**common, reward="model")
    with pytest.raises(ConfigError, match="critic_init=reward"):
        PPOStage(**common, reward="count", count_text="a", critic_init="reward")
    with pytest.raises(ConfigError, match="stage.clip_range=1.5"):
        PPOStage(**common, reward="count", count_text="a", clip_range=1.5)
    with pytest.raises(ConfigError, match="stage.max_new_tokens"):
        fit_ppo(tmp_path, 1, max_new_tokens=40)  # the 32-token context cannot hold prompt + reply
    with pytest.raises(ConfigError, match="stage.reward='bogus'"):
        fit_ppo(tmp_path, 1, reward="bogus")


def test_sft_data_is_refused_with_the_prompt_data_to_use(tmp_path, compose_train):
    folder = base_model_folder(tmp_path / "base")
    cfg = compose_train(
        "stage=ppo", f"init_from={folder}", "data=tasks/arithmetic", "stage.reward=task", toy_data=False
    )
    with pytest.raises(ConfigError, match="data=prompts/arithmetic"):
        train(cfg)


def test_ppo_run_composes_trains_resumes_and_plots(tmp_path, compose_train, compose_eval):
    rl_run_trains_resumes_and_plots(
        tmp_path, compose_train, compose_eval, "ppo", 8, "data.batch_size=8"
    )  # 8 steps/iteration


def test_model_reward_scores_like_the_reward_model_and_is_frozen(tmp_path):
    folder = reward_model_folder(tmp_path / "rm", base_model_folder(tmp_path / "base"))
    reward = build_reward("model", folder, {}, None)
    assert isinstance(reward, ModelReward) and not any(p.requires_grad for p in reward.parameters())
    prompts, replies = ["say: ab", "say: cd"], ["aa", "dd"]
    torch.testing.assert_close(reward(prompts, replies, [None, None]), load_reward_model(folder)(prompts, replies))


@pytest.mark.parametrize("experiment, reward", [("ppo_arithmetic", "task"), ("ppo_sentiment", "model")])
def test_ppo_experiment_recipes_compose(compose_train, experiment, reward):
    cfg = compose_train(f"experiment={experiment}", toy_data=False)
    assert cfg.stage._target_ == "minigpt.stages.ppo.PPOStage" and cfg.stage.reward == reward
    assert cfg.data._target_ == "minigpt.data.prompts.PromptDataModule" and cfg.optim.lr == 2e-5
