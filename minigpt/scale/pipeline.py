"""Pipeline parallelism: the model cut into stages, one per process, fed microbatches by a schedule.

A stack of L blocks is split into P contiguous stages (`stage_layers`): stage 0 holds the embeddings and
the first blocks, the last stage the remaining blocks, the final norm and the head. Stage s sends its
activations (B/M, T, C) to stage s+1 and receives their gradient back, so each process keeps ~1/P of the
weights, gradients and optimizer state. To keep the P processes busy at once, the batch is cut into M
microbatches and a schedule decides the order of forwards (F) and backwards (B) on each stage
(`torch.distributed.pipelining`):

- GPipe (Huang et al. 2019, §2.2): all M forwards, then all M backwards; each stage keeps the activations
  of all M microbatches until their backward.
- 1F1B (Narayanan et al. 2019, PipeDream §3; the non-interleaved "PipeDream-Flush" schedule of Narayanan
  et al. 2021): after P−s warm-up forwards, stage s alternates one forward and one backward, so it keeps
  at most P microbatches' activations.

Both idle each stage for the same "bubble": (P−1)/(M+P−1) of a step (GPipe §2.2, with equal stage times).

The loss is exact: each microbatch's loss is its summed token losses divided by the counted tokens of the
*whole* batch (`PipelineRunner`), so the M losses add up to the full batch's mean loss and the
accumulated gradients are those of one step on the full batch, also when SFT masks a different number of
prompt tokens in each microbatch.

A cut `Transformer` keeps its class and parameter names (`blocks.5.attn.qkv.weight`): the parts a stage
does not run are `None`, and `model.blocks` keeps the blocks under their index in the whole model
(`KeptBlocks`). Checkpoints and the exported model folder therefore hold the whole model's names; the
ranks' shares are put together by `gather_state` / `gather_pipeline_model`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
from torch.distributed.pipelining.schedules import PipelineScheduleSingle

from minigpt.losses.lm import IGNORE_INDEX, lm_loss
from minigpt.model.transformer import Transformer

SCHEDULES: dict[str, type[PipelineScheduleSingle]] = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}


def stage_layers(n_layer: int, stages: int, index: int) -> range:
    """The blocks of stage `index` of `stages`: contiguous, the first `n_layer % stages` stages one more."""
    base, extra = divmod(n_layer, stages)
    start = index * base + min(index, extra)
    return range(start, start + base + (index < extra))


class KeptBlocks(nn.ModuleDict):
    """The blocks a pipeline stage keeps, under their index in the whole model (`blocks.5.…`), so that its
    parameter names and checkpoints are the whole model's; iterated in order, like the `nn.ModuleList` it
    replaces."""

    def __iter__(self) -> Iterator[nn.Module]:  # type: ignore[override]
        return iter(self.values())


def is_pipeline_stage(model: nn.Module) -> bool:
    """Whether `model` is a `Transformer` cut down to one pipeline stage by `cut_model`."""
    return isinstance(getattr(model, "blocks", None), KeptBlocks)


def cut_model(model: Transformer, index: int, stages: int) -> None:
    """Keep in `model` (in place) only what stage `index` of `stages` runs; the rest is dropped and freed.

    A tied head (`tie_embeddings`) stays on the last stage as its own copy of the embedding matrix: the
    first and last stage then sum their gradients of it (`PipelineRunner`), so both copies take the
    single model's update.
    """
    kept = {str(i): model.blocks[i] for i in stage_layers(model.config.n_layer, stages, index)}
    model.blocks = KeptBlocks(kept)  # type: ignore[assignment]  # iterated and indexed by name alike
    if index > 0:
        for name in ("tok_emb", "pos_emb"):
            setattr(model, name, None)
    if index < stages - 1:
        for name in ("norm_f", "lm_head"):
            setattr(model, name, None)


class StageModule(nn.Module):
    """What one stage runs: token ids (first stage) or the residual stream (B, T, C) in; the residual
    stream, or the logits (B, T, vocab) on the last stage, out. The positions and attention mask go to
    every stage (RoPE and packed SFT batches need them in every block)."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, positions: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """One stage of `Transformer.forward` on one microbatch."""
        model = self.model
        if positions is None:  # as `Transformer.hidden_states`: 0..T-1 in every row
            positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0).expand(x.shape[0], -1)
        if model.tok_emb is not None:
            x = model.embed(x, positions)
        rope = model.rope(positions) if model.rope is not None else None
        x, _ = model.run_blocks(x, rope, attn_mask, None)
        if model.lm_head is None:
            return x
        return model.lm_head(model.norm_f(x))


def lm_batch(batch: Any) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """(token ids, targets, the model's keyword inputs) of a next-token batch in either of the project's two
    layouts: pretraining's `(inputs, targets)` pair, or SFT's dict (`input_ids`, `targets` with
    `IGNORE_INDEX` on prompt tokens, and for packed rows `positions` and `attn_mask`)."""
    if isinstance(batch, Mapping):
        extra = {key: batch[key] for key in ("positions", "attn_mask") if batch.get(key) is not None}
        return batch["input_ids"], batch["targets"], extra
    inputs, targets = batch
    return inputs, targets, {}


class PipelineRunner:
    """Runs the schedule of one stage: a training step (forwards and backwards of all microbatches, the
    gradients accumulated in the stage's parameters) or an evaluation (forwards only), and returns the
    full batch's mean loss on every rank.

    `torch.distributed.pipelining` learns the shapes it sends from the first microbatch it sees, so one
    stage and schedule is kept per input shape (SFT's padded batches vary in length); every rank reads
    the same batches and so builds them in the same order.
    """

    def __init__(
        self, model: Transformer, index: int, stages: int, microbatches: int, schedule: str, device: torch.device
    ) -> None:
        self.module, self.index, self.stages = StageModule(model), index, stages
        self.microbatches, self.schedule, self.device = microbatches, SCHEDULES[schedule], device
        self._schedules: dict[tuple[Any, ...], PipelineScheduleSingle] = {}
        self._counted = torch.ones(())
        # The tied embedding matrix: the first stage reads tokens with it, the last scores them with it.
        self.tied: Tensor | None = None
        self.tied_group: Any = None
        if model.config.tie_embeddings and stages > 1:
            self.tied_group = dist.new_group([0, stages - 1])  # every rank takes part in making a group
            if index == 0:
                self.tied = model.tok_emb.weight
            elif index == stages - 1:
                self.tied = model.lm_head.weight

    @property
    def is_last(self) -> bool:
        """Whether this rank runs the last stage (the head and the loss)."""
        return self.index == self.stages - 1

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """A microbatch's summed token losses over the whole batch's counted tokens: the M add up to its mean."""
        return lm_loss(logits, targets, reduction="sum") / self._counted

    def _schedule_for(self, idx: Tensor, extra: dict[str, Tensor], train: bool) -> PipelineScheduleSingle:
        key = (tuple(idx.shape), tuple((k, tuple(v.shape)) for k, v in sorted(extra.items())), train)
        if key not in self._schedules:
            stage = PipelineStage(self.module, self.index, self.stages, self.device)
            # Evaluation: the whole batch as one microbatch, forwards only (any schedule does the same).
            schedule, microbatches = (self.schedule, self.microbatches) if train else (ScheduleGPipe, 1)
            # scale_grads=False: `_loss` already weighs each microbatch; dividing by M again would be wrong.
            self._schedules[key] = schedule(stage, microbatches, loss_fn=self._loss, scale_grads=False)
        return self._schedules[key]

    def run(self, idx: Tensor, targets: Tensor, extra: dict[str, Tensor], train: bool) -> Tensor:
        """The batch's mean loss (a 0-dim tensor on every rank); with `train`, its gradients accumulated.

        Evaluation runs the batch as one microbatch: nothing is gained by splitting a forward-only pass
        that is not timed, and a last batch of any size is then accepted.
        """
        self._counted = (targets != IGNORE_INDEX).sum().clamp(min=1).float()
        schedule = self._schedule_for(idx, extra, train)
        losses: list[Tensor] = []
        args = (idx,) if self.index == 0 else ()  # tokens enter at the first stage, targets meet the last
        target = targets if self.is_last else None
        run: Any = schedule.step if train else schedule.eval  # the keyword inputs go to every stage's forward
        run(*args, target=target, losses=losses, **extra)
        loss = torch.stack(losses).sum().detach() if self.is_last else torch.zeros((), device=self.device)
        dist.broadcast(loss, src=self.stages - 1)
        if train and self.tied is not None and self.tied.grad is not None:
            dist.all_reduce(self.tied.grad, group=self.tied_group)  # ∂L/∂W = embedding's part + head's part
        return loss


def clip_grad_norm(parameters: list[Tensor], max_norm: float, counted_elsewhere: Tensor | None) -> Tensor:
    """Scale the gradients so that the 2-norm over all stages' gradients is at most `max_norm` (the norm
    `torch.nn.utils.clip_grad_norm_` takes of the whole model); returns the norm before.

    `counted_elsewhere` is the last stage's copy of a tied matrix, whose summed gradient the first stage
    already counts.
    """
    grads = [p.grad for p in parameters if p.grad is not None and p is not counted_elsewhere]
    squares = torch.zeros((), dtype=torch.float32, device=grads[0].device if grads else None)
    for grad in grads:
        squares += grad.float().pow(2).sum()
    dist.all_reduce(squares)
    total = squares.sqrt()
    scale = float(max_norm / (total + 1e-6))  # the epsilon torch.nn.utils.clip_grad_norm_ uses
    if scale < 1.0:
        for p in parameters:
            if p.grad is not None:
                p.grad.mul_(scale)
    return total


def gather_state(module: nn.Module) -> dict[str, Tensor]:
    """`module.state_dict()` of the whole pipeline on rank 0 (each rank holds its stage's share), `{}` elsewhere.

    Every rank must call it: gathering is a collective.
    """
    local = {name: value.detach().cpu() for name, value in module.state_dict().items()}
    parts: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(local, parts, dst=0)
    merged: dict[str, Tensor] = {}
    for part in parts or []:
        merged.update(part)
    return merged


def gather_pipeline_model(model: Transformer) -> Transformer | None:
    """A whole (plain) copy of a pipeline-cut model on rank 0, `None` on the other ranks (a collective)."""
    state = gather_state(model)
    if dist.get_rank() != 0:
        return None
    whole = Transformer(model.config)
    whole.load_state_dict(state)
    return whole
