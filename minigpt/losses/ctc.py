"""Connectionist Temporal Classification (Graves et al. 2006, "Connectionist Temporal Classification:
Labelling Unsegmented Sequence Data with Recurrent Neural Networks"), written out, and greedy CTC decoding.

The network emits, at each of T frames, a distribution y_t over the labels plus a blank ∅. A labelling l
(length S) is read off a frame path π by removing repeats, then blanks (the map B: "aa∅ab" → "aab"), and
p(l | x) = Σ_{π ∈ B⁻¹(l)} Π_t y_t(π_t). The forward variables run over l' = l with a blank before, between
and after its labels (length 2S+1), in log space (eq. 5-8):

    α_1(0) = y_1(∅),  α_1(1) = y_1(l_1),  α_1(s) = 0 for s > 1
    α_t(s) = (α_{t−1}(s) + α_{t−1}(s−1) + [l'_s ≠ ∅ and l'_s ≠ l'_{s−2}] · α_{t−1}(s−2)) · y_t(l'_s)
    p(l | x) = α_T(2S) + α_T(2S−1)

The skip from s−2 is allowed only between different labels: between two equal labels the blank is what
keeps them apart. The loss is −log p(l | x), divided by S and averaged over the batch ("mean", as
`torch.nn.functional.ctc_loss`).
"""

from __future__ import annotations

import torch
from torch import Tensor

# "log 0" in the recursion: finite, because logsumexp over entries that are all −inf has a NaN gradient (and the
# band of reachable states leaves many such entries); a total below IMPOSSIBLE is reported as +inf.
LOG_ZERO = -1e30
IMPOSSIBLE = 1e29


def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    reduction: str = "mean",
) -> Tensor:
    """−log p(l | x) per example of a batch.

    Args:
        log_probs: (B, T, K) log-softmax over the K labels (blank included).
        targets: (B, S_max) label ids, padded anywhere past `target_lengths`.
        input_lengths: (B,) frames of each example (≤ T).
        target_lengths: (B,) labels of each example.
        blank: the blank's id.
        reduction: "mean" (each loss divided by its target length, then the batch mean), "sum" or "none".
    An impossible alignment (too few frames for the labels and their separating blanks) gives +inf.
    """
    B, T, _ = log_probs.shape
    S = targets.shape[1]
    ext = torch.full((B, 2 * S + 1), blank, dtype=torch.long, device=targets.device)  # l' = ∅ l_1 ∅ l_2 … ∅
    ext[:, 1::2] = targets
    emit = log_probs.float().gather(2, ext.unsqueeze(1).expand(B, T, 2 * S + 1))  # (B, T, 2S+1): log y_t(l'_s)
    skip = torch.zeros_like(ext, dtype=torch.bool)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    neg = torch.full((B, 2 * S + 1), LOG_ZERO, device=log_probs.device)
    alpha = neg.clone()
    alpha[:, :2] = emit[:, 0, :2]
    final = alpha.clone()  # α at each example's own last frame
    for t in range(1, T):
        stay = alpha
        step = torch.cat([neg[:, :1], alpha[:, :-1]], dim=1)
        jump = torch.where(skip, torch.cat([neg[:, :2], alpha[:, :-2]], dim=1), neg)
        alpha = torch.logsumexp(torch.stack([stay, step, jump]), dim=0) + emit[:, t]
        final = torch.where((input_lengths == t + 1).unsqueeze(1), alpha, final)
    last = (2 * target_lengths).unsqueeze(1)  # index of the trailing blank in each l'
    ends = torch.cat([final.gather(1, last), final.gather(1, (last - 1).clamp(min=0))], dim=1)
    ends[:, 1] = torch.where(target_lengths > 0, ends[:, 1], torch.full_like(ends[:, 1], LOG_ZERO))  # empty l: ∅* only
    loss = -torch.logsumexp(ends, dim=1)  # (B,)
    loss = torch.where(loss > IMPOSSIBLE, torch.full_like(loss, float("inf")), loss)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return (loss / target_lengths.clamp(min=1).to(loss.dtype)).mean()


def ctc_greedy(log_probs: Tensor, blank: int, lengths: Tensor | None = None) -> list[list[int]]:
    """Best path decoding (Graves et al. 2006, §3.2): the argmax label per frame, repeats merged, blanks removed.

    `log_probs` (B, T, K) (or probabilities: only the argmax matters); `lengths` (B,) frames per example.
    """
    best = log_probs.argmax(dim=-1).tolist()  # (B, T)
    out = []
    for b, path in enumerate(best):
        path = path[: int(lengths[b])] if lengths is not None else path
        labels, previous = [], None
        for label in path:
            if label != previous and label != blank:
                labels.append(label)
            previous = label
        out.append(labels)
    return out
