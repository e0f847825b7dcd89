"""A KV cache whose rows fill at their own pace: one slot per running request (continuous batching).

`KVCache` writes every row at one shared position, which suits a batch that starts together. A server's
batch does not: requests join and leave at any step (Yu et al. 2022, "Orca", iteration-level
scheduling), so each row here keeps its own `lengths[row]`. A decoding step writes row b's new key and
value at slot `lengths[b]` and attends over slots 0 … lengths[b] through a key mask; rows shorter than
the longest see their unused slots masked out, as the batch decoder masks left padding.

Rows 0 … `rows - 1` are the running ones, kept packed at the front (`move` fills a freed row with the
last one): a step then reads views of the buffers, with no gather, however often requests come and go.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.model.attention import causal_attention
from minigpt.model.transformer import Transformer


class SlotCache:
    """Keys and values (`max_rows`, n_kv_head, capacity, head_dim) per layer, each row filled to `lengths[row]`.

    Used one token per row at a time: `begin_step(rows)` fixes which rows take part and the key mask;
    the model then calls `attend` once per layer; `end_step` advances those rows' lengths.
    """

    def __init__(self, model: Transformer, max_rows: int, capacity: int) -> None:
        config, weight = model.config, model.tok_emb.weight
        shape = (max_rows, config.n_kv_head, capacity, config.head_dim)
        self.k = [weight.new_zeros(shape) for _ in range(config.n_layer)]
        self.v = [weight.new_zeros(shape) for _ in range(config.n_layer)]
        self.capacity = capacity
        self.lengths = torch.zeros(max_rows, dtype=torch.long, device=weight.device)
        self.rows = 0  # rows in the current step
        self._span = 0  # slots the current step attends over: the longest row's, plus its new one
        self._mask: Tensor | None = None
        self._row_ids = torch.arange(max_rows, device=weight.device)

    @property
    def length(self) -> int:
        """The longest running row (the model reads it only for default positions, which we never use)."""
        return int(self.lengths[: self.rows].max()) if self.rows else 0

    def fill(self, row: int, keys: list[Tensor], values: list[Tensor]) -> None:
        """Make `row` hold `keys[layer]`, `values[layer]` (n_kv_head, T, head_dim): a prefilled request."""
        length = keys[0].shape[1]
        for layer, (k, v) in enumerate(zip(keys, values)):
            self.k[layer][row, :, :length] = k
            self.v[layer][row, :, :length] = v
        self.lengths[row] = length

    def move(self, source: int, target: int) -> None:
        """Row `target` takes row `source`'s filled slots (a finished request's row reused)."""
        length = int(self.lengths[source])
        for buffer in (*self.k, *self.v):
            buffer[target, :, :length] = buffer[source, :, :length]
        self.lengths[target] = length

    def begin_step(self, rows: int) -> None:
        """The next forward pass feeds one token to each of rows 0 … rows-1."""
        self.rows = rows
        lengths = self.lengths[:rows]
        self._span = int(lengths.max()) + 1
        slots = torch.arange(self._span, device=lengths.device)
        # (rows, 1, 1, span): row b may attend its filled slots and the one its new token is written to.
        self._mask = (slots <= lengths.unsqueeze(1))[:, None, None, :]

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        """Write each row's new key/value (rows, n_kv_head, 1, hd) at its own slot; attend over its slots.

        The model's hook (`KVCacheLike`); its `attn_mask` is None in decoding and the cache's own is used.
        """
        rows, lengths = self._row_ids[: self.rows], self.lengths[: self.rows]
        # Advanced indices on dims 0 and 2 pick (rows, n_kv_head, hd): one write per row at its own slot.
        self.k[layer][rows, :, lengths] = k[:, :, 0]
        self.v[layer][rows, :, lengths] = v[:, :, 0]
        keys = self.k[layer][: self.rows, :, : self._span]
        values = self.v[layer][: self.rows, :, : self._span]
        return causal_attention(q, keys, values, self._mask)

    def end_step(self) -> None:
        """Every row of the step now holds one slot more."""
        self.lengths[: self.rows] += 1
