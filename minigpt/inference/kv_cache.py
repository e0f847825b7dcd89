"""A preallocated key/value cache: attention reads past keys and values instead of recomputing them.

Without a cache, generating token t re-runs the model over all t previous tokens (O(t²) work per
sequence); with one, each step feeds only the newest token and attends to the stored keys/values of the
earlier ones (O(t)). Buffers are allocated once at full size and written in place, so a step allocates
nothing and the layout never changes under the model. Grouped-query models store only their `n_kv_head`
heads: the cache is `n_head / n_kv_head` times smaller than the query side.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.model.transformer import Transformer


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
    """Keys and values of every layer: `k[layer]`, `v[layer]` shaped (B, n_kv_head, capacity, head_dim).

    The model calls `update(layer, k, v)` once per layer per forward pass; the new entries are written at
    slot `length`, and `length` advances after the last layer, so all layers of one forward share one
    write position. `length` is also what the model reads for its default positions.

    One buffer per layer with the batch dimension first keeps each row's keys in one contiguous block,
    so reordering rows (every beam-search step) copies whole blocks with `index_select`, into a spare
    buffer that then takes the old one's place.
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
        shape = (batch_size, n_kv_head, capacity, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        # Second buffers that `select` writes into before swapping (allocated on first use).
        self._spare_k: list[Tensor | None] = [None] * n_layer
        self._spare_v: list[Tensor | None] = [None] * n_layer
        self.n_layer, self.capacity = n_layer, capacity
        self.length = 0

    @classmethod
    def for_model(cls, model: Transformer, batch_size: int, capacity: int) -> KVCache:
        """A cache sized for `model`'s layers and heads, in its parameters' dtype and device."""
        config = model.config
        weight = model.tok_emb.weight
        return cls(
            config.n_layer,
            batch_size,
            config.n_kv_head,
            config.head_dim,
            capacity,
            dtype=weight.dtype,
            device=weight.device,
        )

    @property
    def batch_size(self) -> int:
        """Number of rows the cache holds."""
        return self.k[0].shape[0]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store `k`, `v` (B, n_kv_head, T, hd) of `layer`; return all its keys and values (…, S, hd)."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; writing {end} would overflow it.")
        filled = write_slots(self.k[layer], self.v[layer], self.length, k, v)
        if layer == self.n_layer - 1:
            self.length = end
        return filled

    def select(self, rows: Tensor) -> None:
        """Keep (and reorder, or repeat) the batch rows `rows`: beams that survive, sequences still running.

        Beam search calls this every step, so it must be cheap: one `index_select` per buffer copies the
        filled part of every kept row into a second buffer, which then takes the old one's place (the old
        one becomes the next call's target). Gathering and scattering only the rows that moved, in place
        through advanced indexing, took 15–34 % longer in most nano beam searches at batch 8 (benchmarks/):
        the generic indexing kernel copies strided slices element by element, `index_select` copies rows.
        """
        n = self.length
        for buffers, spares in ((self.k, self._spare_k), (self.v, self._spare_v)):
            for layer, buffer in enumerate(buffers):
                spare = spares[layer]
                if spare is None or spare.shape[0] != rows.numel():
                    spare = buffer.new_empty((rows.numel(), *buffer.shape[1:]))
                torch.index_select(buffer.narrow(2, 0, n), 0, rows, out=spare.narrow(2, 0, n))
                buffers[layer], spares[layer] = spare, buffer if buffer.shape[0] == rows.numel() else None

    def reset(self) -> None:
        """Forget every stored position (the buffers are reused)."""
        self.length = 0
