"""`stage=dpo`: direct preference optimisation of the SFT model against a frozen reference.

DPO (Rafailov et al. 2023) trains the policy on preference pairs directly, with the reward implicit in
the log-ratio to a frozen reference π_ref (the model the run starts from). The losses — `sigmoid`
(+ label smoothing, cDPO), `ipo`, `hinge`, `robust` — live in `minigpt.losses.dpo`; sequence log-probs
are summed over the reply's tokens only (`minigpt.losses.logprobs`).

The reference:
* full fine-tuning: a frozen copy of the `init_from` model, kept in eval mode;
* LoRA (`lora.r > 0`): the policy itself with its adapters switched off — no second copy in memory
  (embedding rows of chat tokens new to the model would train and be shared; start from an SFT model);
* `precompute_ref=true`: its log-probs of every pair are computed once before training, so each step
  runs one model instead of two (the reference stays for the KL measured at validation).

`nll_weight` α > 0 adds RPO's α·NLL(chosen)/|chosen| (Pang et al. 2024) to any loss, from the chosen
log-probs the loss already has (no extra forward pass).

Logged: loss, the chosen replies' per-token NLL, implicit rewards β·log(π/π_ref) of chosen and rejected,
their margin, and accuracy (the fraction of pairs whose chosen reward is higher), on training batches and
held-out pairs; at each validation, the gold score of replies *sampled* at temperature 1 on the tasks'
validation prompts (`val/gold/<task>`) and their KL to the reference (`val/kl/<task>`). The same numbers
for the starting model are logged once at the start of training (`val/gold_init/<task>`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from minigpt.losses.dpo import LOSS_TYPES, DPOLossType, DPOOutput, dpo_loss
from minigpt.losses.logprobs import completion_targets, sequence_logprobs
from minigpt.rl.rollout import Rollout, frozen_logprobs
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.stages.task_scoring import log_task_scores, sampled_task_scores
from minigpt.utils.errors import ConfigError

_METRICS = ("loss", "chosen_reward", "rejected_reward", "margin", "accuracy", "chosen_nll")


def completion_logprobs(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
    """Σ log π over each row's reply tokens (2B,), and the model's aux dict."""
    inputs, targets = completion_targets(batch["input_ids"], batch["completion_mask"])
    logits, aux = model(inputs)
    return sequence_logprobs(logits, targets), aux


class DPOStage(Stage):
    """DPO and its variants.

    Args (besides `Stage`'s):
        lora: LoRA adapters, as `SFTStage`'s; the reference is then the policy with its adapters off.
        eval_tasks: log the gold score and KL of sampled replies at each validation (needs tasks).
        loss: `sigmoid`, `ipo`, `hinge` or `robust`.
        beta: β (IPO's τ): how far the policy may move from the reference; smaller = further.
        label_smoothing: ε, the assumed rate of flipped labels (`sigmoid` → cDPO, `robust`).
        nll_weight: α of RPO's NLL term on the chosen replies (Pang et al. 2024): keeps them likely.
        precompute_ref: compute the reference's log-probs of all pairs once, before training.
        num_samples: replies sampled per validation prompt for the gold score and KL.
        max_new_tokens: the longest sampled reply.
    """

    def __init__(
        self,
        *args: Any,
        lora: Mapping[str, Any] | None = None,
        eval_tasks: bool = True,
        loss: DPOLossType = "sigmoid",
        beta: float = 0.1,
        label_smoothing: float = 0.0,
        nll_weight: float = 0.0,
        precompute_ref: bool = False,
        num_samples: int = 4,
        max_new_tokens: int = 32,
        **kwargs: Any,
    ) -> None:
        if lora and (lora.get("train_embedding", False) or lora.get("bias", "none") != "none"):
            raise ConfigError(
                "lora.train_embedding=true or lora.bias!=none with stage=dpo: the LoRA reference (adapters off) "
                "would share the trained embedding/biases and drift with the policy; set them false/none."
            )
        super().__init__(*args, **kwargs)
        self.chat = ChatModel.prepare(self.model, self.tokenizer, lora, "dpo")
        self.eval_tasks = eval_tasks
        if loss not in LOSS_TYPES:
            raise ConfigError(f"stage.loss={loss!r} is unknown; use one of {list(LOSS_TYPES)}.")
        if beta <= 0:
            raise ConfigError(f"stage.beta={beta} must be positive (e.g. stage.beta=0.1).")
        if not 0 <= label_smoothing < 0.5:
            raise ConfigError(f"stage.label_smoothing={label_smoothing} must be in [0, 0.5) (e.g. 0.1).")
        if nll_weight < 0:
            raise ConfigError(f"stage.nll_weight={nll_weight} must be ≥ 0 (0 = plain DPO; RPO uses 1.0).")
        self.loss_type, self.beta, self.label_smoothing = loss, beta, label_smoothing
        self.nll_weight = nll_weight
        self.precompute_ref, self.num_samples, self.max_new_tokens = precompute_ref, num_samples, max_new_tokens
        # Full fine-tuning keeps a frozen copy; with LoRA the reference is the policy, adapters off.
        self.reference = self.chat.frozen_reference(self.model)
        self.ref_cache: dict[str, Tensor] = {}
        self.val_metrics = {name: MeanMetric() for name in _METRICS}
        for name, metric in self.val_metrics.items():
            self.add_module(f"val_{name}", metric)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Full fine-tuning: the model's groups; LoRA: adapters (decayed) and new token rows (not)."""
        return self.chat.param_groups(self.model, weight_decay)

    def save_model_folder(self, folder: str | Path) -> Path:
        """The model folder; with LoRA, the merged model there and the adapter alone in `../adapter`."""
        return self.chat.save(folder, self.model, self.tokenizer)

    @contextlib.contextmanager
    def reference_model(self) -> Iterator[nn.Module]:
        """The frozen reference in eval mode: the kept copy, or the policy with its adapters off."""
        with self.chat.reference(self.model, self.reference) as reference:
            yield reference

    @torch.no_grad()
    def reference_logprobs(self, batch: dict[str, Tensor], split: str) -> Tensor:
        """The reference's (2B,) reply log-probs: from the precomputed cache, or a forward pass."""
        if split in self.ref_cache:
            cached = self.ref_cache[split][batch["index"]]  # (B, 2): chosen, rejected
            return torch.cat([cached[:, 0], cached[:, 1]])
        with self.reference_model() as reference:
            return completion_logprobs(reference, batch)[0]

    def on_fit_start(self) -> None:
        """With `precompute_ref`, run the reference once over every pair of both splits."""
        if not self.precompute_ref:
            return
        pair_batches = self.inputs.pair_batches
        if pair_batches is None:
            source = self.inputs.source or "no data"
            raise ConfigError(f"stage.precompute_ref=true needs preference pairs (data=preferences), not {source}.")
        for split in ("train", "val"):
            indices, logps = [], []
            for batch in pair_batches(split):
                batch = {k: v.to(self.device) for k, v in batch.items()}
                indices.append(batch["index"])
                logps.append(torch.stack(self.reference_logprobs(batch, split).chunk(2), dim=1))
            index = torch.cat(indices)
            cache = torch.zeros(len(index), 2, device=self.device)  # row i: pair i of the split
            cache[index] = torch.cat(logps)
            self.ref_cache[split] = cache

    def _step(self, batch: dict[str, Tensor], split: str) -> tuple[DPOOutput, dict[str, Any]]:
        policy, aux = completion_logprobs(self.model, batch)
        reference = self.reference_logprobs(batch, split)
        (pc, pr), (rc, rr) = policy.chunk(2), reference.chunk(2)
        # |y_w|: the chosen rows' scored tokens (the targets `completion_targets` keeps), for RPO's per-token NLL.
        chosen_lengths = batch["completion_mask"][:, 1:].sum(dim=-1).chunk(2)[0]
        out = dpo_loss(pc, pr, rc, rr, self.beta, self.loss_type, self.label_smoothing, self.nll_weight, chosen_lengths)
        return out, aux

    @staticmethod
    def _metrics(out: DPOOutput) -> dict[str, Tensor]:
        margin = out.chosen_rewards - out.rejected_rewards
        return {
            "loss": out.loss.detach(),
            "chosen_reward": out.chosen_rewards.mean(),
            "rejected_reward": out.rejected_rewards.mean(),
            "margin": margin.mean(),
            "accuracy": (margin > 0).float().mean(),
            "chosen_nll": out.chosen_nll.mean(),
        }

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """The DPO-family loss (+ any auxiliary loss the model reports)."""
        out, aux = self._step(batch, "train")
        self.log_dict({f"train/{k}": v for k, v in self._metrics(out).items()}, prog_bar=True)
        return out.loss + self.aux_loss(aux)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate the loss and implicit-reward metrics over held-out pairs."""
        out, _ = self._step(batch, "val")
        for name, value in self._metrics(out).items():
            self.val_metrics[name].update(value, weight=batch["margin"].shape[0])

    def gold_scores(self) -> tuple[dict[str, float], dict[str, float]]:
        """({task: gold score}, {task: KL to the reference}) of sampled replies; empty without tasks."""
        if not (self.eval_tasks and self.inputs.tasks):
            return {}, {}
        assert self.tokenizer is not None

        def reference(rollout: Rollout) -> Tensor:
            with self.reference_model() as model:
                return frozen_logprobs(model, rollout)

        return sampled_task_scores(
            self.model, self.tokenizer, self.inputs, reference, self.num_samples, self.max_new_tokens
        )

    def on_train_start(self) -> None:
        """Log the starting model's gold score (KL 0 by definition) for comparison."""
        gold, _ = self.gold_scores()
        self.log_dict({f"val/gold_init/{task}": value for task, value in gold.items()})

    def on_validation_epoch_end(self) -> None:
        """Log the pair metrics and, with tasks, gold scores and KL of sampled replies."""
        for name, metric in self.val_metrics.items():
            self.log(f"val/{name}", metric.compute(), prog_bar=name in ("loss", "accuracy"), sync_dist=True)
            metric.reset()
        if self.trainer.sanity_checking:
            return
        gold, kl = self.gold_scores()
        if gold:
            self.log_dict({f"val/kl/{task}": value for task, value in kl.items()}, sync_dist=True)
            log_task_scores(self, gold, "val/gold")
