"""A KV cache whose rows fill at their own pace: one slot per running request (continuous batching).

`KVCache` writes every row at one shared position, which suits a batch that starts together. A server's
batch does not: requests join and leave at any step (Yu et al. 2022, "Orca", iteration-level
scheduling), so each row here keeps its own `lengths[row]`. A decoding step writes row b's new key and
value at slot `lengths[b]` and attends over slots 0 … lengths[b] through a key mask; rows shorter than
the longest see their unused slots masked out, as the batch decoder masks left padding.

A step may also prefill rows: requests that join (their prompt) and requests whose context is full
(the last half-window of their text, a context shift). Their tokens ride in the same forward pass as
the decoding rows' one token each (Orca's "selective batching", §3.2; Sarathi-Serve's mixed batches):
the model sees every token of the step as a row of its own, (N, 1), so its projections and MLPs run
once over all N tokens, and only attention, which is per request, splits them up again here. One
forward pass per step, however many requests join, instead of one more for each step's newcomers.

Rows 0 … `rows - 1` are the running ones, kept packed at the front (`move` fills a freed row with the
last one): a step then reads views of the buffers, with no gather, however often requests come and go.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from minigpt.model.attention import causal_attention
from minigpt.model.transformer import Transformer


class SlotCache:
    """Keys and values (`max_rows`, n_kv_head, capacity, head_dim) per layer, each row filled to `lengths[row]`.

    A step is `begin_step(rows, prefills)`, one forward pass of the step's tokens packed as (N, 1), and
    `end_step()`. Its tokens are, in this order: one token of each decoding row 0 … rows-1, then the
    `prefills[i]` tokens of prefill row `rows + i`, which start at slot 0. The model calls `attend` once
    per layer.
    """

    def __init__(self, model: Transformer, max_rows: int, capacity: int) -> None:
        config, weight = model.config, model.tok_emb.weight
        shape = (max_rows, config.n_kv_head, capacity, config.head_dim)
        self.k = [weight.new_zeros(shape) for _ in range(config.n_layer)]
        self.v = [weight.new_zeros(shape) for _ in range(config.n_layer)]
        self.capacity = capacity
        self.lengths = torch.zeros(max_rows, dtype=torch.long, device=weight.device)
        self.rows = 0  # decoding rows in the current step
        self.prefills: list[int] = []  # tokens of each prefill row of the current step
        self._span = 0  # slots the decoding rows attend over: the longest row's, plus its new one
        self._mask: Tensor | None = None
        self._row_ids = torch.arange(max_rows, device=weight.device)

    @property
    def length(self) -> int:
        """The longest decoding row (the model reads it only for default positions, which we never use)."""
        return int(self.lengths[: self.rows].max()) if self.rows else 0

    def move(self, source: int, target: int) -> None:
        """Row `target` takes row `source`'s filled slots (a finished request's row reused)."""
        length = int(self.lengths[source])
        for buffer in (*self.k, *self.v):
            buffer[target, :, :length] = buffer[source, :, :length]
        self.lengths[target] = length

    def begin_step(self, rows: int, prefills: Sequence[int] = ()) -> None:
        """The next forward pass feeds one token to each of rows 0 … rows-1, then `prefills[i]` tokens to
        row rows + i from its slot 0 (what the row held before is dropped)."""
        if any(n < 1 or n > self.capacity for n in prefills):
            raise ValueError(f"prefills {list(prefills)} must each hold 1 … {self.capacity} tokens.")
        self.rows, self.prefills = rows, list(prefills)
        if rows:
            lengths = self.lengths[:rows]
            self._span = int(lengths.max()) + 1
            slots = torch.arange(self._span, device=lengths.device)
            # (rows, 1, 1, span): row b may attend its filled slots and the one its new token is written to.
            self._mask = (slots <= lengths.unsqueeze(1))[:, None, None, :]

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        """Store the step's keys/values (N, n_kv_head, 1, hd) and attend each query (N, n_head, 1, hd).

        The model's hook (`KVCacheLike`); its `attn_mask` is None here and the cache's own is used. A
        decoding row's query attends over its row's slots; a prefill row's queries attend causally over
        the row's own new tokens.
        """
        rows, outputs, start = self.rows, [], self.rows
        if rows:
            ids, lengths = self._row_ids[:rows], self.lengths[:rows]
            # Advanced indices on dims 0 and 2 pick (rows, n_kv_head, hd): one write per row at its own slot.
            self.k[layer][ids, :, lengths] = k[:rows, :, 0]
            self.v[layer][ids, :, lengths] = v[:rows, :, 0]
            keys = self.k[layer][:rows, :, : self._span]
            values = self.v[layer][:rows, :, : self._span]
            outputs.append(causal_attention(q[:rows], keys, values, self._mask))
        for row, n in enumerate(self.prefills, start=rows):
            # The row's n tokens, (n, heads, 1, hd) in the packed step, are one sequence (1, heads, n, hd).
            new_k, new_v = k[start : start + n].transpose(0, 2), v[start : start + n].transpose(0, 2)
            self.k[layer][row, :, :n] = new_k[0]
            self.v[layer][row, :, :n] = new_v[0]
            queries = q[start : start + n].transpose(0, 2)
            outputs.append(causal_attention(queries, new_k, new_v, None).transpose(0, 2))  # S = T: causal
            start += n
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def end_step(self) -> None:
        """Each decoding row holds one slot more, each prefill row its tokens."""
        self.lengths[: self.rows] += 1
        for row, n in enumerate(self.prefills, start=self.rows):
            self.lengths[row] = n
