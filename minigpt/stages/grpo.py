"""`stage=grpo`: the GRPO family — critic-free RL that compares G replies to the same prompt.

One training step is one GRPO *iteration* (DeepSeekMath, Shao et al. 2024, Algorithm 1):

1. **Rollout.** The policy samples G = `num_generations` replies to each prompt of the batch through the
   shared rollout path (`minigpt.rl.rollout`): rows i·G … i·G + G − 1 answer prompt i.
2. **Score.** A reward per reply (`minigpt.rl.rewards`: a task's gold scorer, a reward-model folder, or
   a user function), plus DAPO's soft overlong penalty if asked. A NaN or infinite reward stops the run.
3. **Filter (DAPO's dynamic sampling).** Groups whose rewards are all equal have zero advantage; with
   `dynamic_sampling` they are dropped and the next batches of prompts refill the update, at most
   `max_sampling_tries` rollout batches per update (then dropped groups top it up).
4. **Advantages.** `group_advantages`: the group baseline (mean, or leave-one-out for RLOO) and a scale
   (group std, batch whitening, or none).
5. **Optimise.** `num_iterations` (μ) passes of `num_minibatches` optimiser steps of `grpo_loss`: the
   clipped ratio [1 − ε, 1 + ε_high], one of four token normalisations, a k3 KL to the reference
   weighted by β, and the MoE auxiliary loss for MoE policies.

Two models instead of PPO's four: the policy and the reference; one when β = 0 (no reference is built)
or with LoRA (the reference is the policy with its adapters switched off). No value model: the group
is the baseline.

Step counting: Lightning counts optimiser steps in manual optimisation, so one iteration advances
`trainer.global_step` by num_iterations × num_minibatches; a batch that only fills the dynamic-sampling
buffer advances nothing. Validation samples one reply per held-out prompt with a fixed seed and logs
reward, gold score, KL, length and EOS rate, and a table of samples (as PPO does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from minigpt.losses.grpo import (
    ADVANTAGES,
    LOSS_TYPES,
    REWARD_SCALES,
    AdvantageKind,
    LossType,
    RewardScale,
    group_advantages,
    grpo_loss,
    informative_groups,
    overlong_penalty,
)
from minigpt.losses.ppo import entropy_from_logits, masked_mean
from minigpt.rl.rewards import ModelReward, build_reward, score_rollout
from minigpt.rl.rollout import Rollout, concat_rollouts, frozen_logprobs, logprobs_of, response_logits, sample_rollout
from minigpt.rl.settings import RolloutSettings
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.stages.inputs import StageInputs, require_prompts
from minigpt.stages.reply_validation import SampledReplyValidation
from minigpt.utils.errors import ConfigError
from minigpt.utils.timing import timed

OVERLONG = ("none", "mask", "penalty")


@dataclass
class GRPOSettings(RolloutSettings):
    """GRPO's hyperparameters; conf/stage/grpo.yaml shows each with its paper's default and meaning."""

    num_generations: int = 8
    advantage: AdvantageKind = "grpo"
    scale_rewards: RewardScale | None = None
    loss_type: LossType = "grpo"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.04
    num_iterations: int = 1
    num_minibatches: int = 1
    micro_batch_size: int | None = None
    max_grad_norm: float | None = 1.0
    dynamic_sampling: bool = False
    max_sampling_tries: int = 3
    overlong: str = "none"
    overlong_cache: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.num_generations, int) or self.num_generations < 2:
            raise ConfigError(
                f"stage.num_generations={self.num_generations!r}: GRPO compares the replies of a group, and a "
                "group of one has nothing to compare; set stage.num_generations≥2 (e.g. 8)."
            )
        for name in ("max_new_tokens", "num_iterations", "num_minibatches", "max_sampling_tries"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"stage.{name}={value!r} must be an integer ≥ 1.")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ConfigError(f"stage.micro_batch_size={self.micro_batch_size} must be ≥ 1 (or null).")
        for name, value, allowed in (
            ("advantage", self.advantage, ADVANTAGES),
            ("loss_type", self.loss_type, LOSS_TYPES),
            ("overlong", self.overlong, OVERLONG),
        ):
            if value not in allowed:
                raise ConfigError(f"stage.{name}={value!r} is unknown; use one of {list(allowed)}.")
        if self.scale_rewards is not None and self.scale_rewards not in REWARD_SCALES:
            raise ConfigError(
                f"stage.scale_rewards={self.scale_rewards!r} is unknown; use one of {list(REWARD_SCALES)} or null."
            )
        if not 0 < self.epsilon < 1:
            raise ConfigError(f"stage.epsilon={self.epsilon} must be in (0, 1), e.g. 0.2.")
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ConfigError(
                f"stage.epsilon_high={self.epsilon_high} is below stage.epsilon={self.epsilon}: clip-higher widens "
                f"the upper bound only; set stage.epsilon_high≥{self.epsilon} (DAPO: 0.28) or null."
            )
        if self.beta < 0:
            raise ConfigError(f"stage.beta={self.beta} must be ≥ 0 (0 = no KL and no reference model).")
        if self.overlong == "penalty" and not 0 < self.overlong_cache <= self.max_new_tokens:
            raise ConfigError(
                f"stage.overlong_cache={self.overlong_cache} must be in "
                f"(0, stage.max_new_tokens={self.max_new_tokens}]."
            )

    @property
    def reuses_rollouts(self) -> bool:
        """Whether the policy moves before the rollout is used up, so π_old must be computed and kept."""
        return self.num_iterations > 1 or self.num_minibatches > 1


@dataclass
class Scored:
    """A rollout with the reward of each row (N,), the gold score where known, and its informative groups."""

    rollout: Rollout
    rewards: Tensor
    gold: Tensor | None

    def groups(self, keep: Tensor, size: int) -> Scored:
        """The rows of the groups where `keep` (N / G,) is True."""
        rows = torch.nonzero(keep.repeat_interleave(size)).squeeze(1).to(self.rewards.device)
        return Scored(
            self.rollout.select(rows),
            self.rewards[rows],
            None if self.gold is None else self.gold[rows],
        )


def concat_scored(parts: list[Scored], pad_id: int) -> Scored:
    """One batch from several scored rollouts (the buffer of dynamic sampling)."""
    gold = [p.gold for p in parts]
    return Scored(
        concat_rollouts([p.rollout for p in parts], pad_id),
        torch.cat([p.rewards for p in parts]),
        None if any(g is None for g in gold) else torch.cat(gold),  # type: ignore[arg-type]
    )


class GRPOStage(SampledReplyValidation, Stage):
    """GRPO, Dr. GRPO, DAPO, RLOO and REINFORCE++ as switches of one stage (see `GRPOSettings`).

    Args (besides `Stage`'s; the GRPO hyperparameters are `GRPOSettings`' fields, passed as keywords):
        reward: `task` (gold scorer), `model` (needs `reward_model`), `count` (toy: occurrences of
            `count_text`), `constitution` (the judges of `constitution`, minus violations; `truth_weight`
            rewards a true answer to a red prompt's sum), or a callable `fn(prompts, completions, tasks) ->
            scores` (a `_target_` node).
        constitution: the run's constitution (`${constitution}`), whose judges `reward=constitution` uses, so
            that the critics SL-CAI revised with (`answer_required`, `unasked`) can be the reward too.
        lora: the LoRA block (`r: 0` = full fine-tuning); with LoRA the reference is adapters-off.
        num_shown: samples shown per validation in the table.
    """

    checkpoint_monitor = ("val/reward", "max")
    # Manual optimisation clips its own gradients, and an iteration is costly enough to log every one.
    trainer_overrides: ClassVar[dict[str, Any]] = {"gradient_clip_val": None, "log_every_n_steps": 1}

    def __init__(
        self,
        *args: Any,
        reward: str | Callable[..., Any] = "task",
        reward_model: str | None = None,
        count_text: str | None = None,
        truth_weight: float = 0.0,
        constitution: Any = None,
        lora: dict[str, Any] | None = None,
        num_shown: int = 8,
        **kwargs: Any,
    ) -> None:
        names = {f.name for f in fields(GRPOSettings)}
        self.grpo = GRPOSettings(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})
        if lora and lora.get("r", 0) and self.grpo.beta > 0:
            if lora.get("train_embedding", False) or lora.get("bias", "none") != "none":
                raise ConfigError(
                    "lora.train_embedding=true or lora.bias!=none with stage.beta>0: the LoRA reference "
                    "(adapters off) would share the trained embedding/biases and drift with the policy; set them "
                    "false/none, or stage.beta=0."
                )
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False  # μ passes of minibatch steps per rollout, clipped by hand
        self.chat = ChatModel.prepare(self.model, self.tokenizer, lora, "grpo")
        self.reward_kind, self.count_text, self.truth_weight = reward, count_text, truth_weight
        self.constitution = constitution
        self.reward_fn: Any = None
        if reward == "model":
            self.reward_fn = build_reward("model", reward_model, {}, None)
            self.check_reward_tokenizer(reward_model)
        elif callable(reward):
            self.reward_fn = build_reward(reward, None, {}, None)
        # The reference: none when β = 0; the policy itself with adapters off under LoRA; else a frozen copy.
        self.reference = self.chat.frozen_reference(self.model) if self.grpo.beta > 0 else None
        self.iteration = 0
        self.pending: list[Scored] = []  # dynamic sampling: informative groups waiting for an update
        self.dropped: list[Scored] = []  # … and the uninformative ones, to top up after the last try
        self.tries = 0
        self.sampling_stats: dict[str, list[float]] = {}
        self.timings: dict[str, float] = {}
        self.init_reply_validation("GRPO", num_shown)

    def check_reward_tokenizer(self, reward_model: str | None) -> None:
        """A reward model must share the policy's tokenizer: it was trained on this lineage's token ids."""
        assert isinstance(self.reward_fn, ModelReward) and self.tokenizer is not None
        theirs = self.reward_fn.scorer.tokenizer
        if theirs.fingerprint() != self.tokenizer.fingerprint():
            raise ConfigError(
                f"stage.reward_model={reward_model} has another tokenizer than the policy "
                f"({type(theirs).__name__}, {theirs.vocab_size} tokens vs {type(self.tokenizer).__name__}, "
                f"{self.tokenizer.vocab_size}); train the reward model from the same SFT model (init_from)."
            )

    # --- setup -------------------------------------------------------------------------------------

    def attach_data(self, inputs: StageInputs) -> None:
        """Refuse data without prompts, or prompts whose reply would not fit the context; build the task reward."""
        super().attach_data(inputs)
        require_prompts(inputs, "grpo", self.grpo.max_new_tokens, self.model.config.block_size)
        if self.reward_fn is None:
            kind = self.reward_kind
            self.reward_fn = build_reward(
                kind, None, inputs.tasks, self.count_text, self.truth_weight, self.constitution
            )

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Full fine-tuning: the model's groups; LoRA: the adapters (and new token rows)."""
        return self.chat.param_groups(self.model, weight_decay)

    # --- rollout and rewards -----------------------------------------------------------------------

    def rollout(
        self, batch: dict[str, list[Any]], generations: int, generator: torch.Generator | None = None
    ) -> Rollout:
        """Sample `generations` replies per prompt of `batch` with the current policy."""
        assert self.tokenizer is not None
        return sample_rollout(
            self.model, self.tokenizer, batch["prompt"], batch["prompt_ids"], self.grpo.generation(),
            batch["task"], generator, num_generations=generations,
        )  # fmt: skip

    def score(self, rollout: Rollout) -> tuple[Tensor, Tensor | None]:
        """The reward of each reply (refused if not finite), and its gold score when every prompt has a task."""
        return score_rollout(self.reward_fn, self.inputs.tasks, rollout, self.device)

    def shaped(self, rollout: Rollout, rewards: Tensor) -> Tensor:
        """The rewards the advantages see: with `overlong=penalty`, plus DAPO's soft length penalty (eq. 13)."""
        if self.grpo.overlong != "penalty":
            return rewards
        lengths = rollout.mask.sum(dim=1) + rollout.finished.long()  # `<|end|>` counts: it is a token spent
        return rewards + overlong_penalty(lengths, self.grpo.max_new_tokens, self.grpo.overlong_cache)

    def loss_mask(self, rollout: Rollout) -> Tensor:
        """The tokens that carry loss: real reply tokens, minus truncated replies with `overlong=mask` (DAPO §3.4)."""
        mask = rollout.mask
        if self.grpo.overlong == "mask":
            mask = mask & rollout.finished.unsqueeze(1)
        return mask

    @contextmanager
    def reference_model(self) -> Iterator[nn.Module]:
        """The frozen reference: the copy, or under LoRA the policy with its adapters switched off."""
        with self.chat.reference(self.model, self.reference) as reference:
            yield reference

    def has_reference(self) -> bool:
        """Whether a reference exists to measure KL against (a copy, or adapters-off under LoRA)."""
        return self.reference is not None or self.chat.lora

    # --- dynamic sampling --------------------------------------------------------------------------

    def collect(self, scored: Scored, target_groups: int) -> Scored | None:
        """Add a rollout to the dynamic-sampling buffer; the batch to train on once it is full, else None.

        Full means `target_groups` informative groups (DAPO §3.2), or `max_sampling_tries` rollout batches
        drawn, after which the most recent dropped groups top the batch up (they carry no policy gradient
        but keep the batch's size, so every DDP rank runs the same number of micro-batches). Ranks decide
        together: an update waits until every rank is full.
        """
        g = self.grpo.num_generations
        keep = informative_groups(self.shaped(scored.rollout, scored.rewards), g)
        if bool(keep.any()):
            self.pending.append(scored.groups(keep, g))
        if not bool(keep.all()):
            self.dropped.append(scored.groups(~keep, g))
        self.tries += 1
        have = sum(len(p.rewards) for p in self.pending) // g
        ready = have >= target_groups or self.tries >= self.grpo.max_sampling_tries
        flag = torch.tensor(float(ready), device=self.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            gathered = self.all_gather(flag)
            assert isinstance(gathered, Tensor)
            flag = gathered.min()
        if not bool(flag):
            return None
        parts, rows = [], 0
        for part in self.pending + list(reversed(self.dropped)):
            take = min(len(part.rewards), (target_groups * g) - rows)
            if take <= 0:
                break
            whole = len(part.rewards) // g
            parts.append(part if take == len(part.rewards) else part.groups(torch.arange(whole) < take // g, g))
            rows += take
        self.sampling_stats.setdefault("sampling_tries", []).append(float(self.tries))
        self.pending, self.dropped, self.tries = [], [], 0
        assert self.tokenizer is not None
        return concat_scored(parts, self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0)

    # --- optimisation ------------------------------------------------------------------------------

    @torch.no_grad()
    def experience(self, rollout: Rollout) -> dict[str, Tensor]:
        """π_old's log-probs (when the policy moves before the rollout is used up) and the reference's (β > 0)."""
        out: dict[str, Tensor] = {}
        if self.grpo.reuses_rollouts:
            out["old_logprobs"] = frozen_logprobs(self.model, rollout)
        if self.grpo.beta > 0:
            with self.reference_model() as reference:
                out["ref_logprobs"] = frozen_logprobs(reference, rollout)
        return out

    def optimise(self, rollout: Rollout, advantages: Tensor, exp: dict[str, Tensor]) -> dict[str, float]:
        """μ passes of `num_minibatches` steps of `grpo_loss`; the mean of each statistic over the steps."""
        opt = self.optimizers()
        assert not isinstance(opt, list)  # one optimiser
        sched = self.lr_schedulers()
        s = self.grpo
        loss_mask = self.loss_mask(rollout)
        n = len(rollout)
        minibatch = math.ceil(n / s.num_minibatches)
        micro = s.micro_batch_size or minibatch
        totals: dict[str, float] = {}
        steps = 0
        for _ in range(s.num_iterations):
            order = (
                torch.randperm(n, device=self.device) if s.num_minibatches > 1 else torch.arange(n, device=self.device)
            )
            for start in range(0, n, minibatch):
                rows = order[start : start + minibatch]
                num_tokens = float(loss_mask[rows].sum().clamp(min=1))  # DAPO: tokens of the accumulated batch
                for part in rows.split(micro):
                    sub = rollout.select(part)
                    width = sub.response.shape[1]
                    logits, aux = response_logits(self.model, sub)
                    logprobs = logprobs_of(logits, sub)
                    old = exp["old_logprobs"][part, :width] if "old_logprobs" in exp else logprobs.detach()
                    ref = exp["ref_logprobs"][part, :width] if "ref_logprobs" in exp else None
                    mask = loss_mask[part, :width]
                    out = grpo_loss(
                        logprobs, old, advantages[part], mask, s.epsilon, s.epsilon_high, s.beta, ref,
                        s.loss_type, s.max_new_tokens, num_tokens,
                    )  # fmt: skip
                    share = len(part) / len(rows)
                    weight = 1.0 if s.loss_type == "dapo" else share  # dapo's normaliser already spans the rows
                    self.manual_backward(out.loss * weight + self.aux_loss(aux) * share)
                    with torch.no_grad():
                        entropy = masked_mean(entropy_from_logits(logits), sub.mask)
                        kl = out.kl * mask.sum() / len(part)  # Σ over each reply's tokens, as PPO logs it
                    parts = {"loss": out.loss * weight, "policy_loss": out.policy_loss * weight}  # the minibatch's
                    parts |= {"clip_low": out.clip_low * share, "clip_high": out.clip_high * share}
                    parts |= {"entropy": entropy * share, **({"kl": kl * share} if s.beta > 0 else {})}
                    for key, value in parts.items():
                        totals[key] = totals.get(key, 0.0) + float(value.detach())
                if s.max_grad_norm:
                    self.clip_gradients(opt, gradient_clip_val=s.max_grad_norm, gradient_clip_algorithm="norm")  # type: ignore[arg-type]
                opt.step()
                if sched is not None:
                    sched.step()  # type: ignore[union-attr]
                opt.zero_grad(set_to_none=True)
                steps += 1
        return {key: value / steps for key, value in totals.items()}

    def training_step(self, batch: dict[str, list[Any]], batch_idx: int) -> None:
        """One GRPO iteration: rollout → score → (filter) → advantages → optimise; logs what it measured."""
        g = self.grpo.num_generations
        start = time.perf_counter()
        with timed(self.timings, "generate"):
            rollout = self.rollout(batch, g)
        with timed(self.timings, "score"):
            rewards, gold = self.score(rollout)
        shaped = self.shaped(rollout, rewards)
        self.sampling_stats.setdefault("frac_reward_zero_std", []).append(
            1.0 - float(informative_groups(shaped, g).float().mean())
        )
        self.record_sampled(rollout, rewards, gold)
        scored = Scored(rollout, rewards, gold)
        if self.grpo.dynamic_sampling:
            ready = self.collect(scored, target_groups=len(batch["prompt"]))
            if ready is None:
                self.timings["other"] = self.timings.get("other", 0.0) + time.perf_counter() - start
                return
            scored = ready
        rollout, rewards = scored.rollout, scored.rewards
        with timed(self.timings, "optimise"):
            advantages = group_advantages(
                self.shaped(rollout, rewards), g, self.grpo.advantage, self.grpo.scale_rewards
            )
            stats = self.optimise(rollout, advantages, self.experience(rollout))
        self.iteration += 1
        self.log_iteration(stats)

    def record_sampled(self, rollout: Rollout, rewards: Tensor, gold: Tensor | None) -> None:
        """Keep the reward, gold score, length and end of every sampled reply until the next update logs them
        (with dynamic sampling, dropped groups included: the logs describe the policy, not the filter)."""
        stats = self.sampling_stats
        lengths = rollout.mask.sum(dim=1).float()
        stats.setdefault("reward", []).extend(rewards.tolist())
        stats.setdefault("length", []).extend(lengths.tolist())
        stats.setdefault("eos", []).extend(rollout.finished.float().tolist())
        if gold is not None:
            stats.setdefault("gold", []).extend(gold.float().tolist())
            stats.setdefault("length_wrong", []).extend(lengths[gold.to(lengths.device) < 1.0].tolist())

    def log_iteration(self, stats: dict[str, float]) -> None:
        """Log the iteration: rewards, gold scores and lengths of every reply sampled for it, losses, timings."""
        sampled = {key: torch.tensor(values) for key, values in self.sampling_stats.items()}
        self.sampling_stats = {}
        reward, lengths = sampled.pop("reward"), sampled.pop("length")
        metrics: dict[str, Any] = {
            "reward": reward.mean(), "reward_std": reward.std() if reward.numel() > 1 else torch.zeros(()),
            "response_length": lengths.mean(), "eos_rate": sampled.pop("eos").mean(),
            "iteration": float(self.iteration), **stats,
        }  # fmt: skip
        wrong = sampled.pop("length_wrong", torch.zeros(0))
        if wrong.numel():
            metrics["response_length_wrong"] = wrong.mean()
        for key, values in sampled.items():  # gold, frac_reward_zero_std, sampling_tries
            metrics[key] = values.mean()
        total = sum(self.timings.values())
        metrics["tokens_per_s"] = float(lengths.sum()) / max(total, 1e-9)  # sampled tokens / iteration time
        self.log_dict({f"train/{k}": v for k, v in metrics.items() if k not in ("reward", "gold")})
        self.log_dict({f"train/{k}": metrics[k] for k in ("reward", "gold") if k in metrics}, prog_bar=True)
        self.log_dict({f"time/{k}": v for k, v in self.timings.items()})
        self.timings = {}

    # --- validation --------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_batch(
        self, batch: dict[str, list[Any]], generator: torch.Generator
    ) -> tuple[dict[str, Tensor], Rollout]:
        """Reward, gold, KL to the reference (Σ over each reply), length and EOS rate of one reply per prompt."""
        rollout = self.rollout(batch, 1, generator)
        rewards, gold = self.score(rollout)
        ref = None
        if self.has_reference():
            with self.reference_model() as reference:  # under LoRA: the policy itself, adapters off
                ref = frozen_logprobs(reference, rollout)
        return self.reply_metrics(rollout, rewards, gold, ref), rollout

    # --- checkpoints -------------------------------------------------------------------------------

    def save_model_folder(self, folder: str | Path) -> Path:
        """The policy's model folder; with LoRA, the merged model there and the adapter alone in `../adapter`."""
        return self.chat.save(folder, self.model, self.tokenizer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the state outside the weights: the iteration count (a partial dynamic-sampling buffer is resampled)."""
        checkpoint["grpo"] = {"iteration": self.iteration}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what `on_save_checkpoint` saved."""
        state = checkpoint.get("grpo")
        if state:
            self.iteration = state["iteration"]
