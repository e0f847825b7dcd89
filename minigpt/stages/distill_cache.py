"""The teacher's distributions, computed once over the data and cached, for off-policy distillation.

`stage=distill stage.teacher_cache=true`: off-policy distillation scores the data's own replies, which
are the same at every epoch, so the teacher's distributions on them can be computed in one pass and read
back at every step instead of running the teacher (its forward pass is about a quarter of a step when it
is as large as the student, more when it is larger; its weights need not be in memory at all).
On-policy batches (GKD) are new student samples every step, so they cannot be cached.

What is kept, per scored token (the reply tokens; the prompt is never scored): the teacher's k most
probable token ids K (`stage.teacher_top_k`), their raw logits z_K, and for each temperature τ the loss
needs (τ = T and τ = 1 for `val/kl`) the log-sum-exp of the other logits, t_τ = log Σ_{v∉K} exp(z_v/τ)
(−inf when k ≥ V: then the whole distribution is kept and the cached loss is exact). From these,

    log P_τ(v) = z_v/τ − log Z_τ  (v ∈ K),   log P_τ(R) = t_τ − log Z_τ,   log Z_τ = log(Σ_K exp(z/τ) + exp(t_τ)),

which is the teacher's distribution with the tail R = V ∖ K merged into one bucket, exactly, at both
temperatures (`minigpt.losses.distill.topk_token_divergence` explains the bucket). Storage per scored
token: k ids (int16 when V ≤ 32767) + k float32 logits + one float32 per temperature; k = V on a char
vocabulary of ~100 tokens is 6 bytes × V, small, and exact; with a large BPE vocabulary k ≪ V is the
only affordable choice, at the price of the tail's inner shape.

Rows are named by the `index` every chat batch carries (`minigpt.data.packing.collate_indexed`): a padded
example or a packed row's position in its split. Whatever order the shuffled loader draws them in, row r's
scored tokens are `offsets[r]:offsets[r + 1]` of the split's arrays, in the row's reading order — the
order of `student_logits[targets != IGNORE_INDEX]`.

The file `<cache_dir>/teacher_logits/<key>.safetensors` is keyed by a hash of the teacher's files, the
tokenizer, the rows of both splits (token ids, targets, positions: any change to the data config that
changes a batch changes the key), k and the temperatures; it is written atomically (temp name, then
rename), so a killed pass leaves no half cache.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from safetensors.torch import load_file, save_file
from torch import Tensor

from minigpt.data.assets import cache_root
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.model.folder import load_model_folder
from minigpt.model.transformer import Transformer
from minigpt.pipeline.keys import folder_digest
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import DataError
from minigpt.utils.io import atomic_write
from minigpt.utils.modes import eval_mode

FORMAT = 1  # bump when the file's layout changes: old caches are then ignored, not misread
SPLITS = ("train", "val")
RowBatches = Callable[[str], Iterable[dict[str, Any]]]


@dataclass
class TopKTeacher:
    """The cached teacher at the N scored tokens of one batch, in row-major order.

    Attributes:
        indices: (N, k) the teacher's top-k token ids.
        logits: (N, k) their raw logits.
        tails: τ → (N,) log Σ_{v∉K} exp(z_v/τ) (−inf when k = V).
    """

    indices: Tensor
    logits: Tensor
    tails: dict[float, Tensor]

    def log_probs(self, temperature: float) -> Tensor:
        """(N, k + 1): log P_τ of the k kept tokens, then of the tail bucket (module doc)."""
        joint = torch.cat([self.logits / temperature, self.tails[float(temperature)].unsqueeze(-1)], dim=-1)
        return joint - joint.logsumexp(dim=-1, keepdim=True)


class TeacherCache:
    """The cached teacher of both splits; `lookup` gives a batch's part of it.

    Attributes:
        path: the cache file.
        built: True when this run made the teacher pass (a cache miss), False when it read the file.
    """

    def __init__(self, tensors: dict[str, Tensor], path: Path, built: bool) -> None:
        self.tensors, self.path, self.built = tensors, path, built
        self.temperatures = [float(t) for t in tensors["temperatures"].tolist()]

    def lookup(self, split: str, index: Tensor, counts: Tensor) -> TopKTeacher:
        """The teacher at the scored tokens of the batch whose rows are `index` (B,), with `counts` (B,) each."""
        offsets = self.tensors[f"{split}.offsets"]
        index = index.cpu()
        starts, ends = offsets[index], offsets[index + 1]
        if not torch.equal(ends - starts, counts.cpu()):
            raise DataError(self.path, "does not hold this batch's scored tokens; delete it and rerun to rebuild it")
        rows = torch.cat([torch.arange(s, e) for s, e in zip(starts.tolist(), ends.tolist())])
        device = counts.device
        tails = self.tensors[f"{split}.tails"][rows].to(device)
        return TopKTeacher(
            indices=self.tensors[f"{split}.indices"][rows].to(device).long(),
            logits=self.tensors[f"{split}.logits"][rows].to(device),
            tails={t: tails[:, i] for i, t in enumerate(self.temperatures)},
        )


def cache_key(teacher: Path, tokenizer: Tokenizer, batches: RowBatches, top_k: int, temperatures: list[float]) -> str:
    """A sha256 of what determines the cache: the teacher's files, tokenizer, data rows, k, temperatures."""
    sha = hashlib.sha256(f"{FORMAT}|{folder_digest(teacher)}|{tokenizer.fingerprint()}|{top_k}|{temperatures}".encode())
    for split in SPLITS:
        sha.update(split.encode())
        for batch in batches(split):
            for name in ("index", "input_ids", "targets", "positions"):
                if name in batch:
                    sha.update(batch[name].numpy().tobytes())
    return sha.hexdigest()[:16]


@torch.no_grad()
def teacher_pass(
    teacher: Transformer, batches: Iterable[dict[str, Any]], top_k: int, temperatures: list[float], device: torch.device
) -> dict[str, Tensor]:
    """One teacher pass over a split: its top-k ids, logits and tail log-sum-exps per scored token (module doc)."""
    rows: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
    vocab = teacher.config.vocab_size
    assert vocab is not None  # a built model's config always has its vocabulary size
    k = min(top_k, vocab)
    for batch in batches:
        layout = {name: batch[name].to(device) for name in ("positions", "attn_mask") if name in batch}
        with eval_mode(teacher):
            logits, _ = teacher(batch["input_ids"].to(device), **layout)
        scored = (batch["targets"] != IGNORE_INDEX).to(device)
        z = logits[scored].float()  # (N, V), row-major: row by row, each in reading order
        values, ids = z.topk(k, dim=-1)
        tails = torch.stack([(z / t).scatter(-1, ids, float("-inf")).logsumexp(dim=-1) for t in temperatures], -1)
        counts = scored.sum(dim=1).tolist()
        for row, i, v, tail in zip(
            batch["index"].tolist(), ids.split(counts), values.split(counts), tails.split(counts)
        ):
            rows[row] = (i, v, tail)
    if sorted(rows) != list(range(len(rows))):
        raise RuntimeError("The teacher pass did not see every row of the split exactly once.")
    order = [rows[r] for r in range(len(rows))]
    counts = torch.tensor([0] + [len(i) for i, _, _ in order])
    return {
        "offsets": counts.cumsum(0),
        "indices": torch.cat([i for i, _, _ in order]).to(torch.int16 if vocab <= 2**15 - 1 else torch.int32).cpu(),
        "logits": torch.cat([v for _, v, _ in order]).cpu(),
        "tails": torch.cat([t for _, _, t in order]).cpu(),
    }


def open_teacher_cache(
    teacher: Path,
    tokenizer: Tokenizer,
    batches: RowBatches,
    top_k: int,
    temperatures: list[float],
    cache_dir: str | None,
    device: torch.device,
) -> TeacherCache:
    """The cache for this teacher and data: read from `cache_dir`, or built by one teacher pass and saved.

    Only a cache miss loads the teacher's weights (for its pass); they are freed when it returns.
    """
    key = cache_key(teacher, tokenizer, batches, top_k, temperatures)
    path = cache_root(cache_dir) / "teacher_logits" / f"{key}.safetensors"
    if path.exists():
        rank_zero_info(f"teacher cache: read {path} (no teacher pass)")
        return TeacherCache(load_file(path), path, built=False)
    start = time.perf_counter()
    model, _ = load_model_folder(teacher, field="teacher")
    model.requires_grad_(False).to(device)
    tensors = {"temperatures": torch.tensor(temperatures, dtype=torch.float64)}
    for split in SPLITS:
        tensors |= {
            f"{split}.{name}": t for name, t in teacher_pass(model, batches(split), top_k, temperatures, device).items()
        }
    del model
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    tokens = sum(len(tensors[f"{split}.indices"]) for split in SPLITS)
    rank_zero_info(
        f"teacher cache: one teacher pass over {tokens} scored tokens in {time.perf_counter() - start:.1f} s → {path}"
    )
    return TeacherCache(tensors, path, built=True)
