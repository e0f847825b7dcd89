"""Decoding attention for rows that share the start of their history: the shared keys are read once.

The beams of one prompt hold in their KV-cache rows the same keys and values for the prompt and for the
tokens they have in common, which in beam search is most of them (beams soon descend from one trunk).
Plain attention reads every row's copy. This reads the shared slots once per group of rows, for all the
group's queries in one call, and each row's own later slots separately; the two partial softmaxes are
then merged by their log-sum-exps. With scores s over the shared slots P and the own slots Q,

    softmax-weighted sum over P ∪ Q = w · out_P + (1 - w) · out_Q,   w = e^lse_P / (e^lse_P + e^lse_Q)
                                                                        = sigmoid(lse_P - lse_Q),

the shared-prefix ("cascade") decomposition of Hydragen (Juravsky et al. 2024, §3). The result equals
plain attention up to float rounding; decoding reads about 1/group of the shared keys' bytes.

The decoder (`minigpt.inference.decoder`) knows which rows share what; it hands the cache this attention
as its backend (`with_shared_prefix`), so the model never hears of beams.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from minigpt.inference.kv_cache import AttentionBackend
from minigpt.inference.one_token_attention import one_token_attention

# The CPU attention kernel that `F.scaled_dot_product_attention` dispatches to, called directly because
# the merge needs its log-sum-exp, which the public function does not return. CPU tensors only (the
# decoder uses this path on the CPU only).
_attention_with_lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask (True = may attend) → additive mask (0 or -inf), the form the kernel takes."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))


def shared_prefix_attention(
    q: Tensor, keys: Tensor, values: Tensor, key_mask: Tensor | None, group: int, shared: int
) -> Tensor:
    """One decoding step of attention for rows in groups that share their first `shared` slots.

    Args:
        q: queries of the new token, (B, n_head, 1, hd).
        keys, values: every filled slot, (B, n_kv_head, S, hd), S > `shared`.
        key_mask: (B, 1, 1, S) boolean, True = may attend, or None. Every row must be allowed at least
            one of the shared slots (else that part's log-sum-exp is undefined).
        group: rows come in groups of `group` consecutive rows (the beams of one prompt) ...
        shared: ... whose slots 0 … shared-1 hold the same keys and values.

    Returns:
        The attention output (B, n_head, 1, hd), as `F.scaled_dot_product_attention` would give it.
    """
    rows, n_head, _, hd = q.shape
    n_kv = keys.shape[1]
    rep, groups = n_head // n_kv, rows // group
    # The query heads that share a key/value head (GQA) become that head's queries: (B, n_kv, rep, hd).
    q = q.reshape(rows, n_kv, rep, hd)
    # Shared part: a group's queries together against the slots of its first row.
    group_q = q.view(groups, group, n_kv, rep, hd).transpose(1, 2).reshape(groups, n_kv, group * rep, hd)
    shared_k = keys.unflatten(0, (groups, group))[:, 0, :, :shared]
    shared_v = values.unflatten(0, (groups, group))[:, 0, :, :shared]
    shared_mask = own_mask = None
    if key_mask is not None:
        shared_mask = (
            _additive(key_mask[..., :shared], q.dtype)
            .view(groups, group, 1, shared)
            .expand(groups, group, rep, shared)
            .reshape(groups, 1, group * rep, shared)
        )
        own_mask = key_mask[..., shared:]
    out_shared, lse_shared = _attention_with_lse(group_q, shared_k, shared_v, attn_mask=shared_mask)
    out_own, lse_own = one_token_attention(q, keys[:, :, shared:], values[:, :, shared:], own_mask)
    # Back to one row per query: (groups, n_kv, group·rep, …) → (B, n_kv, rep, …).
    out_shared = out_shared.view(groups, n_kv, group, rep, hd).transpose(1, 2).reshape(rows, n_kv, rep, hd)
    lse_shared = lse_shared.view(groups, n_kv, group, rep).transpose(1, 2).reshape(rows, n_kv, rep)
    weight = torch.sigmoid(lse_shared - lse_own).unsqueeze(-1)  # the shared slots' share of the softmax
    return (out_own + weight * (out_shared - out_own)).reshape(rows, n_head, 1, hd)


def with_shared_prefix(prefix: tuple[int, int] | None, otherwise: AttentionBackend) -> AttentionBackend:
    """The attention of a one-token decoding step: `shared_prefix_attention` if `prefix`, else `otherwise`.

    `prefix` is (group, shared): rows come in groups of `group` whose first `shared` slots are alike; None
    while they do not (or not enough for it to pay).
    """
    if prefix is None:
        return otherwise
    group, shared = prefix
    return functools.partial(shared_prefix_attention, group=group, shared=shared)
