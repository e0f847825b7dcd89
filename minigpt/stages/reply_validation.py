"""`SampledReplyValidation`: how the RL stages (PPO, GRPO) are validated — on replies they sample.

An RL stage has no validation loss: it is judged by what it says. At every validation the policy samples
replies to the held-out prompts with a fixed seed (so the curves compare like with like) and the stage's
`evaluate_batch` scores them; this mixin accumulates the per-reply numbers into `val/reward`, `val/gold`,
`val/kl`, `val/length` and `val/eos`, logs the starting policy's once as `val/<metric>_init`, and shows a
table of samples (`minigpt.rl.samples.SampleTable`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from minigpt.rl.rollout import Rollout, frozen_logprobs
from minigpt.rl.samples import SampleTable

if TYPE_CHECKING:  # the type checker sees the `Stage` attributes the mixin uses; at run time it is a plain class
    from minigpt.stages.base import Stage as _MixedInto
else:
    _MixedInto = object

VAL_METRICS = ("reward", "gold", "kl", "length", "eos")


class SampledReplyValidation(_MixedInto):
    """Validation hooks over sampled replies. A mixin, not a stage: list it before `Stage`, call
    `init_reply_validation` in `__init__`, and implement `evaluate_batch` (and keep `self.iteration`)."""

    iteration: int

    def init_reply_validation(self, title: str, num_shown: int) -> None:
        """The metrics (registered as submodules, so they follow the device) and the samples table."""
        self.val_metrics = {name: MeanMetric() for name in VAL_METRICS}
        for name, metric in self.val_metrics.items():
            self.add_module(f"val_{name}", metric)
        self.samples = SampleTable(title, num_shown)

    def reply_metrics(
        self, rollout: Rollout, rewards: Tensor, gold: Tensor | None, ref_logprobs: Tensor | None
    ) -> dict[str, Tensor]:
        """Per reply: reward, gold score (if the prompts have tasks), length, whether it ended, and — given the
        reference's log-probs — its KL to the reference, Σₜ [log π − log π_ref] (a Monte-Carlo estimate: y ~ π)."""
        mask = rollout.mask.float()
        out = {"reward": rewards, "length": mask.sum(dim=1), "eos": rollout.finished.float()}
        if ref_logprobs is not None:
            out["kl"] = ((frozen_logprobs(self.model, rollout) - ref_logprobs) * mask).sum(dim=1)
        if gold is not None:
            out["gold"] = gold
        return out

    def evaluate_batch(
        self, batch: dict[str, list[Any]], generator: torch.Generator
    ) -> tuple[dict[str, Tensor], Rollout]:
        """Per-reply validation numbers (keys of `VAL_METRICS`) of replies sampled to `batch`, and the rollout."""
        raise NotImplementedError

    def on_validation_epoch_start(self) -> None:
        """Fixed-seed sampling at every validation: the curves compare like with like."""
        self.val_generator = torch.Generator(device=self.device).manual_seed(0)
        self.samples.clear()

    def validation_step(self, batch: dict[str, list[Any]], batch_idx: int) -> None:
        """Accumulate the reward, gold, KL, length and EOS rate of replies to held-out prompts."""
        out, rollout = self.evaluate_batch(batch, self.val_generator)
        for name, values in out.items():
            self.val_metrics[name].update(values)
        self.samples.add(rollout, out)

    def on_validation_epoch_end(self) -> None:
        """Log `val/reward`, `val/gold`, `val/kl`, `val/length`, `val/eos` and show the samples table."""
        for name, metric in self.val_metrics.items():
            if metric.update_count:
                self.log(f"val/{name}", metric.compute(), prog_bar=name in ("reward", "gold"), sync_dist=True)
            metric.reset()
        if not self.trainer.sanity_checking:
            self.samples.show(self, self.iteration)

    def on_train_start(self) -> None:
        """Measure the starting policy on the validation prompts once: `val/<metric>_init` (KL 0 by definition)."""
        if self.inputs.val_batches is None:
            return
        generator = torch.Generator(device=self.device).manual_seed(0)
        totals: dict[str, list[Tensor]] = {}
        for batch in self.inputs.val_batches():
            out, _ = self.evaluate_batch(batch, generator)
            for name, values in out.items():
                totals.setdefault(name, []).append(values)
        init = {f"val/{k}_init": torch.cat(v).float().mean() for k, v in totals.items() if k != "kl"}
        self.log_dict(init, sync_dist=True)
