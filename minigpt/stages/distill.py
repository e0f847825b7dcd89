"""`stage=distill`: a student learns a frozen teacher's next-token distributions on chat data.

`python train.py stage=distill teacher=<run>/model init_from=<student sft model> data=tasks/mix stage.loss=fkl`

Knowledge distillation (Hinton et al. 2015) trains the student on the teacher's whole distribution at
every reply token rather than on the one gold token, which carries more information per example (the
teacher's ranking of the wrong answers). The losses are `minigpt.losses.distill`: forward KL (Hinton),
reverse KL (MiniLLM, Gu et al. 2023) and the generalised JSD(β) (GKD, Agarwal et al. 2023), at
temperature T with the T² factor, mixed with the hard-label cross-entropy by α.

Two sources of reply tokens (GKD, Agarwal et al. 2023, Algorithm 1):
* off-policy: the data's own replies (the SFT batch); the loss is α·T²·D + (1 − α)·CE on reply tokens;
* on-policy, with probability λ = `on_policy_fraction` per batch: the batch's prompts are answered by the
  student itself, sampled through the shared rollout path (`minigpt.rl.rollout`), and the teacher scores
  those tokens. Training on its own samples removes the train/inference mismatch of off-policy
  distillation (exposure bias): the student learns what the teacher would do in the states the student
  actually reaches. Sampled replies have no gold label, so there the loss is the divergence alone.
  GKD starts from a student already fine-tuned on the data, hence `upstream.needs.distill.init_from: sft`.

The teacher is a model folder (`teacher=`): frozen (no gradients), always used in eval mode, and it must
share the student's tokenizer (the same token ids), otherwise its distributions are over other symbols.
With `teacher_cache=true` (off-policy only) its top-k distributions on the data are computed in one pass
and read back at every step (`minigpt.stages.distill_cache`); the teacher's weights are then not kept.
Validation logs `val/loss` (the configured loss on the data's replies), `val/kl` (the forward KL to the
teacher at T = 1, comparable across losses and temperatures), `val/ce` and, like SFT, greedy task scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from minigpt.inference.config import GenerationConfig
from minigpt.losses.distill import LOSS_TYPES, DistillLossType, mixed_loss, token_divergence, topk_token_divergence
from minigpt.losses.lm import IGNORE_INDEX, lm_loss
from minigpt.model.config import ModelConfig
from minigpt.model.folder import CONFIG, load_model_folder, resolve_model_folder
from minigpt.rl.rollout import response_logits, sample_rollout
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.stages.distill_cache import TeacherCache, TopKTeacher, open_teacher_cache
from minigpt.stages.inputs import StageInputs
from minigpt.stages.task_scoring import log_greedy_task_scores
from minigpt.tokenizer.base import load_tokenizer
from minigpt.utils.errors import ConfigError
from minigpt.utils.modes import eval_mode


def batch_prompt_ids(batch: Mapping[str, Tensor]) -> list[list[int]]:
    """The prompt of each conversation in a chat batch: its tokens up to the first scored one.

    Padded batches hold one conversation per row; packed rows hold several, each starting where its
    position restarts at 0 (`minigpt.data.packing`). A conversation's first target that is not ignored
    is its first reply token, so its prompt is the inputs up to and including that column. Segments with
    no scored token (the padding at the end of a packed row) are skipped; a multi-turn conversation gives
    the prompt of its first reply.
    """
    ids, targets = batch["input_ids"], batch["targets"]
    positions = batch.get("positions")
    prompts: list[list[int]] = []
    for row in range(ids.shape[0]):
        starts = [0] if positions is None else (positions[row] == 0).nonzero().flatten().tolist()
        ends = [*starts[1:], ids.shape[1]]
        for start, end in zip(starts, ends):
            scored = (targets[row, start:end] != IGNORE_INDEX).nonzero()
            if len(scored):
                prompts.append(ids[row, start : start + int(scored[0]) + 1].tolist())
    return prompts


# The teacher at a batch's N scored tokens: its (N, V) logits from a forward pass, or its cached top-k.
Teacher = Tensor | TopKTeacher


class DistillStage(Stage):
    """Distillation from a frozen teacher model folder into the model being trained.

    Args (besides `Stage`'s):
        teacher: the teacher's model folder (or run folder); same tokenizer as the student.
        loss: `fkl`, `rkl` or `jsd` (`minigpt.losses.distill`).
        temperature: T, softening both distributions; the soft term is multiplied by T².
        alpha: α, the weight of the distillation term against the hard-label cross-entropy (off-policy).
        jsd_beta: β of `jsd` (0 → forward KL, 1 → reverse KL).
        on_policy_fraction: λ, the probability that a batch's replies are sampled from the student (GKD).
        max_new_tokens, sample_temperature: how on-policy replies are sampled (GKD samples at 1).
        teacher_cache: compute the teacher's distributions on the data once and read them back (off-policy).
        teacher_top_k: tokens kept per position in the cache (the rest is one bucket; ≥ V keeps them all).
        cache_dir: where the cache lives (`<cache_dir>/teacher_logits/`); null = `$MINIGPT_CACHE`.
        lora: the LoRA block (`r: 0` trains every weight), as in SFT.
        eval_tasks: log greedy task scores at each validation (needs `data.tasks`).
    """

    def __init__(
        self,
        *args: Any,
        teacher: str | None = None,
        loss: DistillLossType = "fkl",
        temperature: float = 1.0,
        alpha: float = 1.0,
        jsd_beta: float = 0.5,
        on_policy_fraction: float = 0.0,
        max_new_tokens: int = 32,
        sample_temperature: float = 1.0,
        teacher_cache: bool = False,
        teacher_top_k: int = 32,
        cache_dir: str | None = None,
        lora: Mapping[str, Any] | None = None,
        eval_tasks: bool = True,
        **kwargs: Any,
    ) -> None:
        check_options(loss, temperature, alpha, jsd_beta, on_policy_fraction)
        check_cache_options(teacher_cache, teacher_top_k, on_policy_fraction)
        super().__init__(*args, **kwargs)
        self.chat = ChatModel.prepare(self.model, self.tokenizer, lora, "distill")
        self.teacher_folder = self.check_teacher(teacher)
        # A cached run reads the teacher's distributions from disk and never holds its weights.
        self.teacher = None if teacher_cache else load_model_folder(self.teacher_folder)[0].requires_grad_(False).eval()
        self.use_cache, self.top_k, self.cache_dir = teacher_cache, teacher_top_k, cache_dir
        self.cache: TeacherCache | None = None  # opened at fit start, when the data's batches are known
        self.loss_type, self.temperature, self.alpha, self.jsd_beta = loss, temperature, alpha, jsd_beta
        self.on_policy_fraction = on_policy_fraction
        self.generation = GenerationConfig(max_new_tokens=max_new_tokens, temperature=sample_temperature)
        self.eval_tasks = eval_tasks
        self.val_metrics = nn.ModuleDict({name: MeanMetric() for name in ("loss", "kl", "ce")})

    def check_teacher(self, path: str | None) -> Path:
        """The teacher's model folder, refused unless it has the student's tokenizer and a context as long.

        Reads its config and tokenizer only: a cached run never loads the teacher's weights.
        """
        if not path:
            raise ConfigError("stage=distill needs a teacher: set teacher=<model folder of a finished run>.")
        folder = resolve_model_folder(path, field="teacher")
        config = ModelConfig.load(folder / CONFIG)
        tokenizer = load_tokenizer(folder) if (folder / "tokenizer.json").exists() else None
        assert self.tokenizer is not None
        if tokenizer is None or tokenizer.fingerprint() != self.tokenizer.fingerprint():
            theirs = "none" if tokenizer is None else f"{type(tokenizer).__name__} of {tokenizer.vocab_size} tokens"
            raise ConfigError(
                f"teacher={path} has another tokenizer ({theirs}) than the student "
                f"({type(self.tokenizer).__name__} of {self.tokenizer.vocab_size} tokens); distil from a teacher "
                "trained with the same tokenizer (e.g. fine-tuned with stage=sft from a run with the same tokenizer)."
            )
        if config.block_size < self.model.config.block_size:
            raise ConfigError(
                f"teacher={path} has a context of {config.block_size} tokens, shorter than the student's "
                f"{self.model.config.block_size}; use a teacher with model.block_size≥{self.model.config.block_size}."
            )
        return folder

    def attach_data(self, inputs: StageInputs) -> None:
        """A cached teacher needs chat batches whose rows carry their `index` (SFT data)."""
        super().attach_data(inputs)
        if self.use_cache and inputs.row_batches is None:
            raise ConfigError(
                f"stage.teacher_cache=true caches the teacher on chat data, not {inputs.source or 'no data'}; "
                "use data=tasks/<task> (e.g. data=tasks/mix) or data=chat, or set stage.teacher_cache=false."
            )

    def on_fit_start(self) -> None:
        """With `teacher_cache`, read the cache of this teacher and data, or build it by one teacher pass."""
        if self.use_cache:
            assert self.tokenizer is not None and self.inputs.row_batches is not None
            temperatures = sorted({1.0, float(self.temperature)})  # T for the loss, 1 for val/kl
            self.cache = open_teacher_cache(
                self.teacher_folder, self.tokenizer, self.inputs.row_batches, self.top_k, temperatures,
                self.cache_dir, self.device,
            )  # fmt: skip

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Full fine-tuning: the student's groups; LoRA: its adapters (the teacher never trains)."""
        return self.chat.param_groups(self.model, weight_decay)

    @torch.no_grad()
    def teacher_logits(self, input_ids: Tensor, **layout: Any) -> Tensor:
        """The teacher's logits on the same inputs as the student, in eval mode (no dropout)."""
        assert self.teacher is not None
        with eval_mode(self.teacher):
            logits, _ = self.teacher(input_ids, **layout)
        return logits

    def off_policy(self, batch: dict[str, Tensor], split: str) -> tuple[Tensor, Teacher, Tensor, dict[str, Any]]:
        """The student's logits on the data's conversations, the teacher at their scored tokens (cached
        top-k, or (N, V) logits of a forward pass), the targets, and the student's aux."""
        layout = {"positions": batch.get("positions"), "attn_mask": batch.get("attn_mask")}
        student, aux = self.model(batch["input_ids"], **layout)
        scored = batch["targets"] != IGNORE_INDEX
        if self.cache is not None:
            return student, self.cache.lookup(split, batch["index"], scored.sum(dim=1)), batch["targets"], aux
        return student, self.teacher_logits(batch["input_ids"], **layout)[scored], batch["targets"], aux

    def divergence(self, student: Tensor, teacher: Teacher, loss_type: DistillLossType, temperature: float) -> Tensor:
        """(N,) D(P_t, Q_t) at the N scored tokens, from the student's (N, V) logits there and the teacher."""
        if isinstance(teacher, TopKTeacher):
            log_probs = teacher.log_probs(temperature)
            return topk_token_divergence(student, teacher.indices, log_probs, loss_type, temperature, self.jsd_beta)
        return token_divergence(student, teacher, loss_type, temperature, self.jsd_beta)

    def on_policy(self, batch: dict[str, Tensor]) -> tuple[Tensor, Teacher, Tensor, dict[str, Any]]:
        """The student's logits on replies it samples to the batch's prompts (GKD), the teacher's (N, V) at
        their scored tokens, the targets and the student's aux."""
        assert self.tokenizer is not None
        prompt_ids = batch_prompt_ids(batch)
        prompts = [self.tokenizer.decode(p) for p in prompt_ids]
        rollout = sample_rollout(self.model, self.tokenizer, prompts, prompt_ids, self.generation)
        student, aux = response_logits(self.model, rollout)
        assert self.teacher is not None  # on-policy runs never cache (`check_cache_options`)
        with torch.no_grad(), eval_mode(self.teacher):
            teacher, _ = response_logits(self.teacher, rollout)
        self.log("train/reply_length", rollout.mask.sum(dim=1).float().mean())
        return student, teacher[rollout.targets != IGNORE_INDEX], rollout.targets, aux

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """With probability λ on the student's own samples (divergence only), else on the data (α-mixed)."""
        sampled = bool(torch.rand(()) < self.on_policy_fraction)
        student, teacher, targets, aux = self.on_policy(batch) if sampled else self.off_policy(batch, "train")
        alpha = 1.0 if sampled else self.alpha  # sampled replies have no gold label for the hard term
        per_token = self.divergence(student[targets != IGNORE_INDEX], teacher, self.loss_type, self.temperature)
        out = mixed_loss(per_token, student, targets, self.temperature, alpha)
        self.log_dict(
            {"train/loss": out.loss, "train/divergence": out.divergence, "train/on_policy": float(sampled)},
            prog_bar=False,
        )
        return out.loss + self.aux_loss(aux)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """On the data's replies: the configured loss, the forward KL at T = 1 and the cross-entropy."""
        student, teacher, targets, _ = self.off_policy(batch, "val")
        scored = targets != IGNORE_INDEX
        per_token = self.divergence(student[scored], teacher, self.loss_type, self.temperature)
        out = mixed_loss(per_token, student, targets, self.temperature, self.alpha)
        kl = self.divergence(student[scored], teacher, "fkl", 1.0).mean()
        weight = scored.sum()
        for name, value in (("loss", out.loss), ("kl", kl), ("ce", lm_loss(student, targets))):
            self.val_metrics[name].update(value, weight=weight)

    def on_validation_epoch_end(self) -> None:
        """Log `val/loss`, `val/kl`, `val/ce` and, with tasks, the greedy task scores (`val/score`)."""
        for name, metric in self.val_metrics.items():
            self.log(f"val/{name}", metric.compute(), prog_bar=name != "ce", sync_dist=True)
            metric.reset()
        log_greedy_task_scores(self, self.eval_tasks)

    def save_model_folder(self, folder: str | Path) -> Path:
        """The student's model folder (with LoRA: merged, and the adapter alone in `../adapter`)."""
        return self.chat.save(folder, self.model, self.tokenizer)


def check_cache_options(teacher_cache: bool, top_k: int, on_policy_fraction: float) -> None:
    """Refuse a teacher cache that cannot serve the run: on-policy samples, or no tokens kept."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ConfigError(f"stage.teacher_top_k={top_k!r} must be a positive integer (e.g. 32).")
    if teacher_cache and on_policy_fraction > 0:
        raise ConfigError(
            f"stage.teacher_cache=true cannot serve stage.on_policy_fraction={on_policy_fraction}: on-policy replies "
            "are new student samples every step, which the teacher must score; set stage.on_policy_fraction=0 or "
            "stage.teacher_cache=false."
        )


def check_options(loss: str, temperature: float, alpha: float, beta: float, on_policy_fraction: float) -> None:
    """Refuse a bad `stage.*` option before any model is loaded, naming the field and its range."""
    if loss not in LOSS_TYPES:
        raise ConfigError(f"stage.loss={loss!r} is not a distillation loss; use one of {', '.join(LOSS_TYPES)}.")
    if temperature <= 0:
        raise ConfigError(f"stage.temperature={temperature} must be positive (e.g. 1.0 or 2.0).")
    for name, value in (("alpha", alpha), ("jsd_beta", beta), ("on_policy_fraction", on_policy_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"stage.{name}={value} must be between 0 and 1.")
