"""`stage=rest`: ReST and ReST-EM — self-training on the model's own replies that a reward approves.

One *iteration* is a Grow step followed by Improve steps (Gulcehre et al. 2023, "Reinforced Self-Training
(ReST) for Language Modeling", 2308.08998, Algorithm 1; Singh et al. 2023, "Beyond Human Data", 2312.06585):

1. **Grow.** The current policy samples N = `num_samples` replies to each of `grow_prompts` training
   prompts through the shared rollout path (`minigpt.rl.rollout`, any temperature/top-k/top-p), and the
   reward (`minigpt.rl.rewards`: a task's gold scorer or a reward model) scores each. The scored replies
   are written to `rest/iteration_<n>/grow.jsonl` in the run folder (chat JSONL, `minigpt.rl.grow_file`).
2. **Improve.** For each threshold τ₁ < τ₂ < … (`thresholds`), `improve_steps` optimiser steps of SFT's
   loss (`lm_steps.chat_nll`, the NLL of the reply tokens) on the replies with reward ≥ τ, at most K =
   `max_per_prompt` per prompt (`minigpt.rl.rest_filter`). ReST-EM's M-step maximises
   Σ_{x, y: R(x, y) ≥ τ} log π(y | x) — the EM view of RL with a binary reward (2312.06585, eq. 2–3).

The variants differ in three defaults: ReST-EM (`variant=rest_em`) binarises at one threshold, caps K
replies per prompt and fine-tunes each iteration *from the base model* (`restart_from_base`), so that
later iterations do not overfit on their own earlier data; ReST (`variant=rest`) filters with rising
thresholds and keeps improving the previous policy.

Lightning drives the loop: each training batch of prompts either feeds the Grow step (no optimiser step,
so `trainer.global_step` counts Improve steps only) or, once the Grow step is complete, is traded for one
Improve step on the kept replies. The run stops after `iterations` iterations; `trainer.max_steps` must
leave room for iterations × len(thresholds) × improve_steps steps. After each iteration the model folder
is written to `rest/iteration_<n>/model` and the greedy exact-match on validation prompts is logged as
`val/score`. A resumed run restarts the interrupted iteration: from the model that began it, reusing its
Grow file when that was complete.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from minigpt.data.chat import encode_conversation
from minigpt.data.packing import collate_padded
from minigpt.evaluation.tasks import evaluate_tasks
from minigpt.model.folder import load_model_folder
from minigpt.rl.grow_file import read_grow_file, write_grow_file
from minigpt.rl.rest_filter import ScoredReply, check_thresholds, keep_replies, require_kept
from minigpt.rl.rewards import build_reward, score_rollout
from minigpt.rl.rollout import Rollout, frozen_logprobs, sample_rollout
from minigpt.rl.settings import RolloutSettings
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel, frozen_copy
from minigpt.stages.inputs import StageInputs, require_prompts
from minigpt.stages.lm_steps import chat_nll
from minigpt.stages.reply_validation import SampledReplyValidation
from minigpt.stages.task_scoring import log_task_scores
from minigpt.utils.errors import ConfigError

# What each variant leaves to the settings given as null: (thresholds, max_per_prompt, restart_from_base).
VARIANTS: dict[str, tuple[list[float], int | None, bool]] = {
    "rest_em": ([1.0], 4, True),  # binary reward: keep the correct replies, K = 4 per prompt, M-step from base
    "rest": ([0.5, 0.7, 0.9], None, False),  # rising τ, no cap, keep improving the policy
}


@dataclass
class RestSettings(RolloutSettings):
    """ReST's hyperparameters; conf/stage/rest.yaml shows each with its meaning. Null fields take the variant's."""

    variant: str = "rest_em"
    iterations: int = 3
    num_samples: int = 8
    grow_prompts: int = 256
    thresholds: list[float] | None = None
    max_per_prompt: int | None = None
    restart_from_base: bool | None = None
    improve_steps: int = 100
    improve_batch_size: int = 32
    max_grad_norm: float | None = 1.0
    eval_prompts: int = 200

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"stage.variant={self.variant!r} is unknown; use one of {list(VARIANTS)}.")
        thresholds, cap, restart = VARIANTS[self.variant]
        self.thresholds = check_thresholds(thresholds if self.thresholds is None else list(self.thresholds))
        if self.variant == "rest_em" and len(self.thresholds) != 1:
            raise ConfigError(
                f"stage.variant=rest_em binarises the reward at one threshold, not stage.thresholds={self.thresholds}; "
                "give one value (e.g. '[1.0]') or use stage.variant=rest for rising thresholds."
            )
        self.max_per_prompt = cap if self.max_per_prompt is None else (self.max_per_prompt or None)  # 0: no cap
        self.restart_from_base = restart if self.restart_from_base is None else bool(self.restart_from_base)
        for name in ("iterations", "num_samples", "grow_prompts", "improve_steps", "improve_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"stage.{name}={value!r} must be an integer ≥ 1.")

    @property
    def steps_per_iteration(self) -> int:
        """Optimiser steps of one iteration: `improve_steps` per threshold."""
        assert self.thresholds is not None
        return len(self.thresholds) * self.improve_steps


class RestStage(SampledReplyValidation, Stage):
    """ReST and ReST-EM (see the module docstring and `RestSettings`).

    Args (besides `Stage`'s; the ReST hyperparameters are `RestSettings`' fields, passed as keywords):
        reward: `task` (the prompts' gold scorer), `model` (needs `reward_model`), `count` (toy: occurrences
            of `count_text`), or a callable `fn(prompts, completions, tasks) -> scores`.
        num_shown: samples shown per validation in the table.
    """

    checkpoint_monitor = ("val/reward", "max")
    # Manual optimisation: Grow batches take no optimiser step, and gradients are clipped by hand.
    trainer_overrides: ClassVar[dict[str, Any]] = {"gradient_clip_val": None}

    def __init__(
        self,
        *args: Any,
        reward: Any = "task",
        reward_model: str | None = None,
        count_text: str | None = None,
        num_shown: int = 8,
        **kwargs: Any,
    ) -> None:
        names = {f.name for f in fields(RestSettings)}
        self.rest = RestSettings(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        self.chat = ChatModel.prepare(self.model, self.tokenizer, None, "rest")
        # The starting model: what ReST-EM restarts each Improve from, and the reference validation's KL is to.
        self.base = frozen_copy(self.model)
        self.reward_kind, self.count_text = reward, count_text
        self.reward_fn: Any = build_reward("model", reward_model, {}, None) if reward == "model" else None
        self.iteration = 0  # iterations completed
        self.grown: list[ScoredReply] = []  # the current Grow step's scored replies
        self.batches: Iterator[dict[str, Tensor]] | None = None  # Improve batches; None while growing
        self.phase = self.phase_step = 0  # threshold index and step within it
        self.resuming = False
        self.init_reply_validation("ReST", num_shown)

    # --- setup -------------------------------------------------------------------------------------

    def attach_data(self, inputs: StageInputs) -> None:
        """Refuse data without prompts, or prompts whose reply would not fit the context; build the task reward."""
        super().attach_data(inputs)
        require_prompts(inputs, "rest", self.rest.max_new_tokens, self.model.config.block_size)
        if self.reward_fn is None:
            self.reward_fn = build_reward(self.reward_kind, None, inputs.tasks, self.count_text)

    def iteration_dir(self, number: int) -> Path:
        """`rest/iteration_<number>` in the run folder (1-based): its Grow file and its model folder."""
        return Path(self.trainer.default_root_dir) / "rest" / f"iteration_{number}"

    def on_train_start(self) -> None:
        """Check the step budget; on resume, restart the interrupted iteration from the model that began it."""
        needed = self.trainer.global_step + (self.rest.iterations - self.iteration) * self.rest.steps_per_iteration
        if self.trainer.max_steps < needed:
            raise ConfigError(
                f"trainer.max_steps={self.trainer.max_steps} is too few for stage.iterations={self.rest.iterations} × "
                f"{len(self.rest.thresholds or [])} thresholds × stage.improve_steps={self.rest.improve_steps}; "
                f"set trainer.max_steps≥{needed} (the run stops after its last iteration)."
            )
        if self.resuming:
            self.resuming = False
            if self.iteration == 0:
                self.model.load_state_dict(self.base.state_dict())
            else:
                previous, _ = load_model_folder(self.iteration_dir(self.iteration) / "model")
                self.model.load_state_dict(previous.state_dict())
            grow_file = self.iteration_dir(self.iteration + 1) / "grow.jsonl"
            if grow_file.exists():  # written atomically: complete, so the Grow step need not run again
                self.grown = read_grow_file(grow_file)
                self.start_improve()
        super().on_train_start()

    # --- Grow ----------------------------------------------------------------------------------------

    def rollout(self, batch: dict[str, list[Any]], samples: int, generator: torch.Generator | None = None) -> Rollout:
        """Sample `samples` replies per prompt of `batch` with the current policy."""
        assert self.tokenizer is not None
        return sample_rollout(
            self.model, self.tokenizer, batch["prompt"], batch["prompt_ids"], self.rest.generation(),
            batch["task"], generator, num_generations=samples,
        )  # fmt: skip

    def grow(self, batch: dict[str, list[Any]]) -> None:
        """Sample and score N replies per prompt of `batch`; once `grow_prompts` prompts are in, write the file."""
        rollout = self.rollout(batch, self.rest.num_samples)
        rewards, gold = score_rollout(self.reward_fn, self.inputs.tasks, rollout, self.device)
        golds = [None] * len(rollout) if gold is None else gold.tolist()
        rows = zip(rollout.prompts, rollout.completions, rewards.tolist(), rollout.tasks, golds)
        self.grown += [ScoredReply(*row) for row in rows]
        if len(self.grown) < self.rest.grow_prompts * self.rest.num_samples:
            return
        write_grow_file(self.iteration_dir(self.iteration + 1) / "grow.jsonl", self.grown)
        self.start_improve()

    # --- Improve -------------------------------------------------------------------------------------

    def start_improve(self) -> None:
        """Log the Grow step; restart from the base weights (ReST-EM) and a fresh optimiser; begin at τ₁."""
        rewards = torch.tensor([r.reward for r in self.grown])
        metrics = {"grow/reward": rewards.mean(), "grow/replies": float(len(rewards))}
        if all(r.gold is not None for r in self.grown):
            metrics["grow/gold"] = torch.tensor([float(r.gold or 0.0) for r in self.grown]).mean()
        self.log_dict(metrics)
        if self.rest.restart_from_base:
            self.model.load_state_dict(self.base.state_dict())
        opt, sched = self.optimizers(), self.lr_schedulers()
        opt.optimizer.state.clear()  # type: ignore[union-attr]  # Adam's moments belonged to the last data set
        if sched is not None and sched.last_epoch > 0:  # type: ignore[union-attr]
            sched.last_epoch = -1  # type: ignore[union-attr]  # the schedule spans one iteration: start it again
            sched.step()  # type: ignore[union-attr]
        self.phase = 0
        self.begin_phase()

    def begin_phase(self) -> None:
        """Keep the replies above this phase's threshold (capped per prompt) as endless shuffled SFT batches."""
        assert self.rest.thresholds is not None and self.tokenizer is not None
        threshold = self.rest.thresholds[self.phase]
        kept = keep_replies(self.grown, threshold, self.rest.max_per_prompt)
        require_kept(kept, self.grown, threshold, self.iteration + 1)
        self.log_dict({"grow/kept": float(len(kept)), "grow/kept_prompts": float(len({r.prompt for r in kept}))})
        examples = [
            encode_conversation(self.tokenizer, [{"role": "user", "content": r.prompt},
                                                 {"role": "assistant", "content": r.reply}])
            for r in kept
        ]  # fmt: skip
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        generator = torch.Generator().manual_seed(self.iteration * 1000 + self.phase)
        loader = DataLoader(examples, batch_size=self.rest.improve_batch_size, shuffle=True, generator=generator,
                            collate_fn=partial(collate_padded, pad_id=pad))  # fmt: skip
        self.batches = itertools.chain.from_iterable(itertools.repeat(loader))
        self.phase_step = 0

    def improve(self) -> None:
        """One optimiser step of SFT's loss on the kept replies; moves on to the next threshold or iteration."""
        assert self.batches is not None and self.rest.thresholds is not None
        batch = {k: v.to(self.device) for k, v in next(self.batches).items()}
        loss, aux = chat_nll(self.model, batch)
        opt, sched = self.optimizers(), self.lr_schedulers()
        assert not isinstance(opt, list)  # one optimiser
        self.manual_backward(loss + self.aux_loss(aux))
        if self.rest.max_grad_norm:
            self.clip_gradients(opt, gradient_clip_val=self.rest.max_grad_norm, gradient_clip_algorithm="norm")  # type: ignore[arg-type]
        opt.step()
        if sched is not None:
            sched.step()  # type: ignore[union-attr]
        opt.zero_grad(set_to_none=True)
        threshold = self.rest.thresholds[self.phase]
        self.log_dict({"train/loss": loss.detach(), "train/threshold": threshold}, prog_bar=True)
        self.log("train/iteration", float(self.iteration + 1))
        self.phase_step += 1
        if self.phase_step < self.rest.improve_steps:
            return
        self.phase += 1
        if self.phase < len(self.rest.thresholds):
            self.begin_phase()
        else:
            self.end_iteration()

    def end_iteration(self) -> None:
        """Write the iteration's model folder, log its greedy validation score, and stop after the last one."""
        self.iteration += 1
        self.grown, self.batches = [], None
        if self.trainer.is_global_zero:
            self.save_model_folder(self.iteration_dir(self.iteration) / "model")
        if self.inputs.tasks and self.rest.eval_prompts:
            assert self.tokenizer is not None
            scores = evaluate_tasks(self.model, self.tokenizer, self.inputs.tasks, "val", self.rest.eval_prompts)
            log_task_scores(self, scores, "val/score")
        if self.iteration >= self.rest.iterations:
            self.trainer.should_stop = True

    def training_step(self, batch: dict[str, list[Any]], batch_idx: int) -> None:
        """A prompt batch feeds the Grow step; once it is complete, each batch is one Improve step instead."""
        if self.iteration >= self.rest.iterations:
            self.trainer.should_stop = True
        elif self.batches is None:
            self.grow(batch)
        else:
            self.improve()

    # --- validation and checkpoints -----------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_batch(
        self, batch: dict[str, list[Any]], generator: torch.Generator
    ) -> tuple[dict[str, Tensor], Rollout]:
        """Reward, gold, KL to the starting model (Σ over each reply), length and EOS rate of one reply per prompt."""
        rollout = self.rollout(batch, 1, generator)
        rewards, gold = score_rollout(self.reward_fn, self.inputs.tasks, rollout, self.device)
        return self.reply_metrics(rollout, rewards, gold, frozen_logprobs(self.base, rollout)), rollout

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the iterations completed (a resume restarts the next one from its beginning)."""
        checkpoint["rest"] = {"iteration": self.iteration}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what `on_save_checkpoint` saved; `on_train_start` rewinds to the iteration's start."""
        state = checkpoint.get("rest")
        if state:
            self.iteration, self.resuming = state["iteration"], True
