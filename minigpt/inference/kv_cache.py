"""A preallocated key/value cache: attention reads past keys and values instead of recomputing them.

Without a cache, generating token t re-runs the model over all t previous tokens (O(t²) work per
sequence); with one, each step feeds only the newest token and attends to the stored keys/values of the
earlier ones (O(t)). Buffers are allocated once at full size and written in place, so a step allocates
nothing and the layout never changes under the model. Grouped-query models store only their `n_kv_head`
heads: the cache is `n_head / n_kv_head` times smaller than the query side.

The cache is also where decoding chooses how to attend: the model hands each layer's queries, keys and
values to `KVCache.attend`, which stores the keys/values and attends with the cache's `attention`
backend: the model's own `causal_attention` unless the decoder sets a decoding-only variant
(`minigpt.inference.shared_prefix`, `minigpt.inference.one_token_attention`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from minigpt.model.attention import CausalSelfAttention, causal_attention
from minigpt.model.transformer import Transformer

# (queries (B, n_head, T, hd), keys and values (B, n_kv_head, S, hd), boolean mask (B|1, 1, T, S) or
#  None = causal) → attention output (B, n_head, T, hd): how a layer attends over its cached slots.
AttentionBackend = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]


def write_slots(keys: Tensor, values: Tensor, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Write `k`, `v` (B, n_kv_head, T, hd) into one layer's buffers at slots start … start+T-1.

    Returns the filled slots 0 … start+T-1 of both buffers, as views. `narrow` is one view op where
    `[:, :, a:b]` is three: it matters at one token per step.
    """
    end = start + k.shape[2]
    keys.narrow(2, start, k.shape[2]).copy_(k)
    values.narrow(2, start, v.shape[2]).copy_(v)
    return keys.narrow(2, 0, end), values.narrow(2, 0, end)


class KVCache:
    """Keys and values of every layer, `k[layer]` and `v[layer]`, each (B, n_kv_head, capacity, head_dim).

    The model calls `attend(layer, q, k, v, attn_mask)` once per layer per forward pass; the new entries
    are written at slot `length` (`update`), and `length` advances after the last layer, so all layers of
    one forward share one write position. `length` is also what the model reads for its default positions.
    `attention` is the backend that attends over the filled slots; whoever decodes may swap it.

    Rows change in two ways. `select` keeps, reorders or repeats rows by copying them (sequences that
    finish, one prefill copied to every beam). `follow` is beam search's step: most beams continue a
    beam of the step before, and rows that share a history need not hold it twice over. The cache keeps
    `common[p, q]`, how many leading slots rows p and q are known to hold alike (a lower bound), and when
    row p must take row s's history it copies only slots `common[s, p]` … `length - 1`, where the two
    differ: beams of one prompt mostly differ in their last few tokens.

    Every buffer is a tensor of its own, not a view of one shared allocation: the compiled decoding step
    (`minigpt.inference.compiled`) takes them as inputs and writes into them, and inputs that share
    memory and are written make the compiled function rebuild them from their common base before every
    call (AOTAutograd's "synthetic base"), which cost a quarter to a third of a nano model's step.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.n_layer, self.capacity = n_layer, capacity
        shape = (batch_size, n_kv_head, capacity, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.length = 0
        # common[p, q]: the number of leading slots rows p and q are known to hold alike (a lower bound).
        self.common = torch.zeros(batch_size, batch_size, dtype=torch.long, device=device)
        self.attention: AttentionBackend = causal_attention

    @classmethod
    def for_model(cls, model: Transformer, batch_size: int, capacity: int) -> KVCache:
        """A cache sized for `model`'s layers and heads, in its parameters' dtype and device."""
        config = model.config
        weight = model.tok_emb.weight
        # The heads this process holds: config.n_kv_head, or n_kv_head / T under tensor parallelism.
        n_kv_head = next(m.n_kv_head for m in model.modules() if isinstance(m, CausalSelfAttention))
        return cls(
            config.n_layer,
            batch_size,
            n_kv_head,
            config.head_dim,
            capacity,
            dtype=weight.dtype,
            device=weight.device,
        )

    @property
    def batch_size(self) -> int:
        """Number of rows the cache holds."""
        return self.k[0].shape[0]

    @property
    def device(self) -> torch.device:
        """Where the buffers live."""
        return self.k[0].device

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store `k`, `v` (B, n_kv_head, T, hd) of `layer`; return all its keys and values (…, S, hd)."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; writing {end} would overflow it.")
        filled = write_slots(self.k[layer], self.v[layer], self.length, k, v)
        if layer == self.n_layer - 1:
            self.length = end
        return filled

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        """Store `k`, `v` (B, n_kv_head, T, hd) of `layer`; attend `q` (B, n_head, T, hd) over all its slots.

        The model's hook (`minigpt.model.attention.KVCacheLike`). Returns (B, n_head, T, hd).
        """
        keys, values = self.update(layer, k, v)
        return self.attention(q, keys, values, attn_mask)

    def select(self, rows: Tensor) -> None:
        """Keep (and reorder, or repeat) the batch rows `rows`: sequences still running, copies of a prompt.

        Copies the filled part of every kept row into new buffers (one `index_select` per buffer).
        """
        n = self.length

        def kept(buffer: Tensor) -> Tensor:
            new = buffer.new_empty((rows.numel(), *buffer.shape[1:]))
            torch.index_select(buffer.narrow(2, 0, n), 0, rows, out=new.narrow(2, 0, n))
            return new

        self.k, self.v = [kept(b) for b in self.k], [kept(b) for b in self.v]
        self.common = self._common_after(rows)

    def follow(self, sources: list[int]) -> None:
        """Row p takes the history of row `sources[p]`, copying only the slots where the two differ.

        Rows with `sources[p] == p` keep theirs. A row that takes another's history must not itself be
        taken from (`sources[sources[p]] == sources[p]`), so that every copy reads a row that stays.
        """
        moved = [row for row, source in enumerate(sources) if source != row]
        if any(sources[sources[row]] != sources[row] for row in moved):
            raise ValueError("KVCache.follow: a row that takes another's history is itself taken from.")
        if moved:
            origin = [sources[row] for row in moved]
            # Slots common[origin, row] … length-1 differ. Seen as rows of hd numbers (B·heads·capacity, hd),
            # a buffer holds (row, head, slot) at (row·heads + head)·capacity + slot: every slot to copy, in
            # every head, is then one index list, moved by one gather and one scatter per buffer.
            heads, capacity = self.k[0].shape[1], self.capacity
            targets, reads = [], []
            for row, source, start in zip(moved, origin, self.common[origin, moved].tolist()):
                for slot in range(start, self.length):
                    targets.append(row * heads * capacity + slot)
                    reads.append(source * heads * capacity + slot)
            if targets:
                offsets = torch.arange(heads, device=self.device) * capacity  # the same slot, head by head
                to, read = (torch.tensor([targets, reads], device=self.device).unsqueeze(-1) + offsets).flatten(1)
                for buffer in (*self.k, *self.v):
                    flat = buffer.view(-1, buffer.shape[-1])
                    flat.index_copy_(0, to, flat.index_select(0, read))
        self.common = self._common_after(torch.tensor(sources, device=self.device))

    def _common_after(self, rows: Tensor) -> Tensor:
        """`common` once new row i holds old row `rows[i]`: copies of one row agree on every filled slot."""
        common = self.common[rows][:, rows]
        return common.masked_fill(rows.unsqueeze(1) == rows.unsqueeze(0), self.length)

    def reset(self) -> None:
        """Forget every stored position (the buffers are reused)."""
        self.length = 0
        self.common.zero_()
