"""`stage=ppo`: RLHF with PPO — a policy, a frozen reference, a reward, and a value model (critic).

One training step is one PPO *iteration* (Ouyang et al. 2022 §3.5; Stiennon et al. 2020):

1. **Rollout.** The policy samples a reply to each prompt of the batch through the KV-cache generator
   (`minigpt.rl.rollout`), stopping at `<|end|>`.
2. **Score.** The reward (`stage.reward`: a reward model, a task's gold scorer, or a toy count) scores
   each reply; a reply that never ended gets `missing_eos_penalty` added. PPO-max normalises scores by
   their running moments and clips them.
3. **Experience.** Without gradients: log-probs of the reply tokens under the policy (π_old) and the
   reference, the critic's values; per-token rewards −β·KL plus the score on the last token; GAE
   advantages and returns; advantages whitened (`minigpt.losses.ppo`).
4. **Optimise.** `ppo_epochs` passes over the experience in `num_minibatches` shuffled minibatches
   (each split into micro-batches of `micro_batch_size` rows whose gradients accumulate): clipped
   surrogate loss for the actor, clipped value loss for the critic, optional entropy bonus and PPO-ptx
   (an SFT loss on the tasks' demonstrations), the MoE auxiliary loss; global gradient-norm clipping;
   separate actor and critic optimisers (Lightning manual optimisation).

PPO-max switches (Zheng et al. 2023, "Secrets of RLHF in Large Language Models Part I", §5.3 and
Fig. 11), each a flag: `normalize_reward` + `reward_clip`, `normalize_advantages`, `value_clip`,
`critic_warmup` (iterations with the actor frozen while the critic learns), `max_grad_norm`,
`ptx_coef`, `kl_coef` (token-level KL penalty in the reward; `kl_target` makes it adaptive).

Step counting: Lightning counts every optimiser step in manual optimisation, so one iteration advances
`trainer.global_step` by 2 × ppo_epochs × num_minibatches (actor and critic; the critic alone during
warm-up) and `trainer.max_steps` is set in those units; `train/iteration` is logged. Validation samples
replies to held-out prompts with a fixed seed and logs their reward, gold score, KL and length, and a
table of samples (console, `samples/` in the run folder, a W&B table with `logger=wandb`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from minigpt.losses.lm import lm_loss
from minigpt.losses.ppo import (
    AdaptiveKLController,
    RunningMoments,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_per_token,
    masked_mean,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)
from minigpt.model.heads import ScalarHead, ValueModel
from minigpt.rl.rewards import DATA_REWARDS, ModelReward, build_reward, score_rollout
from minigpt.rl.rollout import Rollout, frozen_logprobs, logprobs_of, response_hidden, sample_rollout
from minigpt.rl.settings import RolloutSettings
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel, frozen_copy
from minigpt.stages.inputs import StageInputs, require_prompts
from minigpt.stages.reply_validation import SampledReplyValidation
from minigpt.utils.errors import ConfigError
from minigpt.utils.modes import eval_mode
from minigpt.utils.timing import timed


@dataclass
class PPOSettings(RolloutSettings):
    """PPO's hyperparameters; conf/stage/ppo.yaml shows each with its default and meaning."""

    ppo_epochs: int = 2  # passes over one batch of experience
    num_minibatches: int = 2  # optimiser steps per pass
    micro_batch_size: int | None = None  # rows per forward/backward (gradient accumulation); None = minibatch
    clip_range: float = 0.2  # ε of the policy ratio
    value_clip: float | None = 0.2  # ε_v of the value clip (PPO-max); None = plain squared error
    vf_coef: float = 0.5
    entropy_coef: float = 0.0
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE λ
    kl_coef: float = 0.05  # β of the per-token KL penalty in the reward
    kl_target: float | None = None  # adapt β towards this KL per reply (Ziegler et al. 2019); None = fixed
    kl_horizon: int = 10000
    kl_estimator: str = "k1"
    missing_eos_penalty: float = -1.0  # added to the score of a reply that never ended
    normalize_reward: bool = True  # PPO-max: running-moment normalisation of scores …
    reward_clip: float | None = 5.0  # … clipped to ±reward_clip
    normalize_advantages: bool = True  # PPO-max: whitened advantages
    critic_warmup: int = 0  # PPO-max: iterations with the actor frozen while the critic learns
    max_grad_norm: float | None = 1.0  # PPO-max: global gradient-norm clipping
    ptx_coef: float = 0.0  # PPO-ptx: weight of an SFT loss on the tasks' demonstrations

    def __post_init__(self) -> None:
        for name in ("ppo_epochs", "num_minibatches", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"stage.{name}={value!r} must be an integer ≥ 1.")
        if not 0 < self.clip_range < 1:
            raise ConfigError(f"stage.clip_range={self.clip_range} must be in (0, 1), e.g. 0.2.")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ConfigError(f"stage.gamma={self.gamma}, stage.lam={self.lam}: both must be in [0, 1].")
        if self.kl_estimator not in ("k1", "k3"):
            raise ConfigError(f"stage.kl_estimator={self.kl_estimator!r} is unknown; use k1 or k3.")
        if self.kl_coef < 0 or (self.kl_target is not None and self.kl_target <= 0):
            raise ConfigError(f"stage.kl_coef={self.kl_coef} must be ≥ 0 and stage.kl_target > 0 (or null).")


class PPOStage(SampledReplyValidation, Stage):
    """PPO with a KL-penalised reward, GAE, clipped losses and the PPO-max stabilisers.

    Args (besides `Stage`'s; the PPO hyperparameters are `PPOSettings`' fields, passed as keywords):
        lora: LoRA adapters on the policy, as `SFTStage`'s (none by default: every weight trains).
        reward: `model` (needs `reward_model`), `task` (gold scorer) or `count` (toy: occurrences of
            `count_text`).
        critic_init: `reward` (the reward model's trunk and head), `policy` (a copy of the policy's
            trunk, a zero head) or `auto` (reward when there is a reward model).
        share_trunk: the critic is a head on the policy's own trunk (one network, less memory).
        critic_lr: the critic's learning rate (null = `optim.lr`).
        num_shown: samples shown per validation in the table.
    """

    checkpoint_monitor = ("val/reward", "max")
    # Manual optimisation clips its own gradients (`max_grad_norm`; Lightning refuses `gradient_clip_val`),
    # and an iteration is costly enough to log every one.
    trainer_overrides: ClassVar[dict[str, Any]] = {"gradient_clip_val": None, "log_every_n_steps": 1}

    def __init__(
        self,
        *args: Any,
        lora: Mapping[str, Any] | None = None,
        reward: str = "model",
        reward_model: str | None = None,
        count_text: str | None = None,
        critic_init: str = "auto",
        share_trunk: bool = False,
        critic_lr: float | None = None,
        num_shown: int = 8,
        **kwargs: Any,
    ) -> None:
        names = {f.name for f in fields(PPOSettings)}
        settings = PPOSettings(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})
        super().__init__(*args, **kwargs)
        self.chat = ChatModel.prepare(self.model, self.tokenizer, lora, "ppo")
        self.ppo = settings
        self.automatic_optimization = False  # two optimisers, several steps per batch of experience
        if critic_init not in ("auto", "reward", "policy"):
            raise ConfigError(f"stage.critic_init={critic_init!r} is unknown; use auto, reward or policy.")
        self.critic_lr = critic_lr
        self.reward_kind, self.count_text = reward, count_text
        self.kl_controller = AdaptiveKLController(self.ppo.kl_coef, self.ppo.kl_target, self.ppo.kl_horizon)
        self.reward_moments = RunningMoments()
        self.iteration = 0

        self.reference = frozen_copy(self.model)
        # A task or execution reward needs the data's tasks: it is built in `attach_data`. The others are
        # built now, a reward model so that the critic can start from it.
        self.reward_fn: Any = None if reward in DATA_REWARDS else build_reward(reward, reward_model, {}, count_text)
        has_reward_model = isinstance(self.reward_fn, ModelReward)
        if critic_init == "reward" and (share_trunk or not has_reward_model):
            raise ConfigError(
                "stage.critic_init=reward needs a reward model (stage.reward=model) and a critic of its own "
                "(stage.share_trunk=false); use stage.critic_init=policy or auto."
            )
        self.share_trunk = share_trunk
        self.value_head: ScalarHead | None = None  # the critic's head on the policy's trunk, if shared
        self.critic: ValueModel | None = None  # a separate critic network otherwise
        if share_trunk:
            self.value_head = ScalarHead(self.model.config.n_embd)
        elif critic_init == "reward" or (critic_init == "auto" and has_reward_model):
            reward_model = self.reward_fn.model
            critic = ValueModel(copy.deepcopy(reward_model.trunk), copy.deepcopy(reward_model.head))
            self.critic = critic.requires_grad_(True)  # the reward model's copy was frozen
        else:
            self.critic = ValueModel(copy.deepcopy(self.model))
        if self.critic is not None and self.critic.trunk.lm_head.weight is not self.critic.trunk.tok_emb.weight:
            self.critic.trunk.lm_head.requires_grad_(False)  # an untied LM head plays no part in values
        self.init_reply_validation("PPO", num_shown)
        self.demos: Any = None

    # --- setup -------------------------------------------------------------------------------------

    def attach_data(self, inputs: StageInputs) -> None:
        """Refuse data without prompts or with prompts whose reply would not fit the context; build the task
        reward and the PPO-ptx demonstrations from the data's tasks."""
        super().attach_data(inputs)
        require_prompts(inputs, "ppo", self.ppo.max_new_tokens, self.model.config.block_size)
        if self.reward_kind in DATA_REWARDS:
            self.reward_fn = build_reward(self.reward_kind, None, inputs.tasks, None)
        if self.ppo.ptx_coef > 0 and not (inputs.tasks and inputs.demonstrations):
            raise ConfigError(
                f"stage.ptx_coef={self.ppo.ptx_coef} needs task prompts (data=prompts/<task>): their answers "
                "are the demonstrations; set stage.ptx_coef=0 for prompts from a file."
            )

    def setup(self, stage: str) -> None:
        """Start the PPO-ptx demonstrations (here, in each process: an iterator does not pickle for ddp_spawn);
        refuse to train before the data was handed over (a task reward and PPO-ptx need its tasks)."""
        if self.reward_fn is None or (self.ppo.ptx_coef > 0 and self.inputs.demonstrations is None):
            raise ConfigError(
                "stage=ppo got no data before fit: call minigpt.stages.inputs.prepare_fit(stage, datamodule) "
                "(train.py does) so that stage.reward=task and stage.ptx_coef find the prompts' tasks."
            )
        if self.ppo.ptx_coef > 0 and self.demos is None:
            assert self.inputs.demonstrations is not None
            self.demos = self.inputs.demonstrations()

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The policy's groups: all of it, or its LoRA adapters and new token rows."""
        return self.chat.param_groups(self.model, weight_decay)

    def critic_param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The critic's trunk (decay on matrices) and head (no decay); the head alone with a shared trunk."""
        if self.critic is None:
            assert self.value_head is not None
            return [{"params": list(self.value_head.parameters()), "weight_decay": 0.0}]
        groups = self.critic.trunk.param_groups(weight_decay)
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
        return [*groups, {"params": list(self.critic.head.parameters()), "weight_decay": 0.0}]

    def configure_optimizers(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Actor and critic optimisers; each schedule spans its half of `trainer.max_steps`."""
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        total = max(max_steps // 2, 1) if max_steps and max_steps > 0 else None
        wd = self.optim_cfg.weight_decay
        return [
            self.build_optimizer(self.param_groups(wd), total_steps=total),
            self.build_optimizer(self.critic_param_groups(wd), lr=self.critic_lr, total_steps=total),
        ]

    # --- experience --------------------------------------------------------------------------------

    def values(self, rollout: Rollout, hidden: Tensor | None = None) -> Tensor:
        """V(sₜ) (B, L) for each reply token's state; `hidden` = the policy's, when the trunk is shared."""
        if self.critic is None:
            assert self.value_head is not None and hidden is not None
            return self.value_head.per_token(hidden)
        critic_hidden, _ = response_hidden(self.critic.trunk, rollout)
        return self.critic.head.per_token(critic_hidden)

    def rollout(self, batch: dict[str, list[Any]], generator: torch.Generator | None = None) -> Rollout:
        """Sample one reply per prompt of `batch` with the current policy."""
        assert self.tokenizer is not None
        return sample_rollout(
            self.model,
            self.tokenizer,
            batch["prompt"],
            batch["prompt_ids"],
            self.ppo.generation(),
            batch["task"],
            generator,
        )

    def score(self, rollout: Rollout) -> tuple[Tensor, Tensor | None]:
        """The reward of each reply (refused if not finite), and its gold score when every prompt has a task."""
        return score_rollout(self.reward_fn, self.inputs.tasks, rollout, self.device)

    @torch.no_grad()
    def experience(self, rollout: Rollout, scores: Tensor) -> dict[str, Tensor]:
        """Old and reference log-probs, values, KL, per-token rewards, advantages and returns, all (B, L)."""
        mask = rollout.mask.float()
        with eval_mode(self):
            hidden, _ = response_hidden(self.model, rollout)  # one pass gives π_old and, if shared, the values
            old_logprobs = logprobs_of(self.model.lm_head(hidden), rollout)
            values = self.values(rollout, hidden) * mask
        ref_logprobs = frozen_logprobs(self.reference, rollout)
        scores = scores + self.ppo.missing_eos_penalty * (~rollout.finished).float()
        if self.ppo.normalize_reward:
            self.reward_moments.update(scores)
            scores = self.reward_moments.normalize(scores, self.ppo.reward_clip)
        kl = kl_per_token(old_logprobs, ref_logprobs, self.ppo.kl_estimator) * mask
        rewards = token_rewards(scores, kl, mask, self.kl_controller.value)
        advantages, returns = gae(rewards, values, mask, self.ppo.gamma, self.ppo.lam)
        if self.ppo.normalize_advantages:
            advantages = whiten(advantages, mask)
        return {"old_logprobs": old_logprobs, "ref_logprobs": ref_logprobs, "values": values, "kl": kl,
                "advantages": advantages, "returns": returns}  # fmt: skip

    # --- optimisation ------------------------------------------------------------------------------

    def ppo_loss(self, rollout: Rollout, exp: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Clipped policy loss + vf_coef · clipped value loss − entropy bonus + MoE aux (+ PPO-ptx)."""
        mask = rollout.mask.float()
        hidden, aux = response_hidden(self.model, rollout)
        logits = self.model.lm_head(hidden)
        logprobs = logprobs_of(logits, rollout)
        values = self.values(rollout, hidden if self.share_trunk else None)
        policy = policy_loss(logprobs, exp["old_logprobs"], exp["advantages"], mask, self.ppo.clip_range)
        v_loss, v_clip = value_loss(values, exp["values"], exp["returns"], mask, self.ppo.value_clip)
        entropy = masked_mean(entropy_from_logits(logits), mask)
        loss = policy.loss + self.ppo.vf_coef * v_loss - self.ppo.entropy_coef * entropy + self.aux_loss(aux)
        stats = {
            "policy_loss": policy.loss.detach(), "value_loss": v_loss.detach(), "entropy": entropy.detach(),
            "clip_fraction": policy.clip_fraction, "approx_kl": policy.approx_kl, "value_clip_fraction": v_clip,
        }  # fmt: skip
        if self.ppo.ptx_coef > 0:
            demo = {k: v.to(self.device) for k, v in next(self.demos).items()}
            ptx = lm_loss(self.model(demo["input_ids"])[0], demo["targets"])
            loss = loss + self.ppo.ptx_coef * ptx
            stats["ptx_loss"] = ptx.detach()
        return loss, stats

    def optimise(self, rollout: Rollout, exp: dict[str, Tensor]) -> dict[str, float]:
        """`ppo_epochs` passes of minibatch steps over the experience; returns the mean of each statistic."""
        actor_opt, critic_opt = self.optimizers()
        schedulers = self.lr_schedulers()
        actor_sched, critic_sched = schedulers if isinstance(schedulers, list) else (None, None)
        train_actor = self.iteration >= self.ppo.critic_warmup
        n = len(rollout)
        minibatch = math.ceil(n / self.ppo.num_minibatches)
        micro = self.ppo.micro_batch_size or minibatch
        totals: dict[str, float] = {}
        count = 0
        for _ in range(self.ppo.ppo_epochs):
            order = torch.randperm(n, device=self.device)
            for start in range(0, n, minibatch):
                rows = order[start : start + minibatch]
                for part in rows.split(micro):
                    sub = rollout.select(part)
                    width = sub.response.shape[1]
                    loss, stats = self.ppo_loss(sub, {k: v[part, :width] for k, v in exp.items()})
                    self.manual_backward(loss * len(part) / len(rows))  # mean over the minibatch's rows
                    for key, value in stats.items():
                        totals[key] = totals.get(key, 0.0) + float(value) * len(part) / len(rows)
                count += 1
                for opt, sched, model_trains in (
                    (actor_opt, actor_sched, train_actor),
                    (critic_opt, critic_sched, True),
                ):
                    if model_trains:
                        if self.ppo.max_grad_norm:
                            self.clip_gradients(
                                opt, gradient_clip_val=self.ppo.max_grad_norm, gradient_clip_algorithm="norm"
                            )
                        opt.step()
                        if sched is not None:
                            sched.step()
                    opt.zero_grad(set_to_none=True)
        return {key: value / count for key, value in totals.items()}

    def training_step(self, batch: dict[str, list[Any]], batch_idx: int) -> None:
        """One PPO iteration: rollout → score → experience → optimise; logs everything it measured."""
        timings: dict[str, float] = {}
        with timed(timings, "generate"):
            rollout = self.rollout(batch)
        with timed(timings, "score"):
            scores, gold = self.score(rollout)
        with timed(timings, "experience"):
            exp = self.experience(rollout, scores)
        with timed(timings, "optimise"):
            stats = self.optimise(rollout, exp)

        mask = rollout.mask.float()
        kl_per_reply = (kl_per_token(exp["old_logprobs"], exp["ref_logprobs"], "k1") * mask).sum(dim=1).mean()
        self.kl_controller.update(float(kl_per_reply), len(rollout))
        self.iteration += 1
        headline = {"reward": scores.mean(), **({"gold": gold.mean()} if gold is not None else {})}
        metrics = {
            "kl": kl_per_reply, "kl_coef": self.kl_controller.value,
            "response_length": mask.sum(dim=1).mean(), "eos_rate": rollout.finished.float().mean(),
            "explained_variance": explained_variance(exp["values"], exp["returns"], mask),
            "iteration": float(self.iteration), **stats,
        }  # fmt: skip
        self.log_dict({f"train/{k}": v for k, v in headline.items()}, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in metrics.items()})
        self.log_dict({f"time/{k}": v for k, v in timings.items()})

    # --- validation --------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_batch(
        self, batch: dict[str, list[Any]], generator: torch.Generator
    ) -> tuple[dict[str, Tensor], Rollout]:
        """Reward, gold score, KL to the reference (Σ over each reply), length and EOS rate of sampled replies."""
        rollout = self.rollout(batch, generator)
        scores, gold = self.score(rollout)
        return self.reply_metrics(rollout, scores, gold, frozen_logprobs(self.reference, rollout)), rollout

    # --- checkpoints -------------------------------------------------------------------------------

    def save_model_folder(self, folder: str | Path) -> Path:
        """The policy's model folder; with LoRA, the merged model there and the adapter alone in `../adapter`."""
        return self.chat.save(folder, self.model, self.tokenizer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the state outside the weights: iteration, reward moments, KL coefficient."""
        checkpoint["ppo"] = {"iteration": self.iteration, "reward_moments": self.reward_moments.state_dict(),
                             "kl_coef": self.kl_controller.value}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what `on_save_checkpoint` saved."""
        state = checkpoint.get("ppo")
        if state:
            self.iteration, self.kl_controller.value = state["iteration"], state["kl_coef"]
            self.reward_moments.load_state_dict(state["reward_moments"])
