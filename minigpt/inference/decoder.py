"""`BatchDecoder`: runs the model over a batch of left-padded, growing token rows with a KV cache.

It owns what every decoding strategy shares: left padding with per-row positions and attention masks,
one prefill pass over the prompts, one token per step afterwards, row selection (beams, finished
sequences) and the context window. Strategies (`generate.py`, `beam.py`) only choose tokens.

Left padding puts every row's newest token in the same column, so one step serves the whole batch. Pad
columns are masked out as keys and do not count as positions: row i's first real token has position 0
whatever its padding, so a padded row computes exactly what it would alone.

With `compile=True` each one-token step runs through `minigpt.inference.compiled` (the same model,
cache buffers, positions and masks, as one compiled function); prefills stay eager.

Beam search reorders its rows every step (`select` with as many rows as before). Copying whole rows
of the cache to follow the beams would move the whole history of most rows every step; instead a beam
that continues a row of the step before simply stays in that row (physical row), and only a second
beam continuing the same row takes over a row that no beam continues, copying the few slots where the
two histories differ (`KVCache.follow`). The decoder then keeps `order`: which physical row each
caller-visible (logical) row lives in, and maps the tokens fed and the logits returned through it.
The beams of one prompt (`select(..., group=num_beams)`) also keep to their group's rows, and once
their common history is at least half of it, decoding steps read it once per group instead of once per
beam (`shared_prefix`, which the decoder sets as its cache's attention backend,
`minigpt.inference.shared_prefix`).

When a row outgrows `model.block_size`, the cache is rebuilt from the last half-window of tokens (a
"context shift"): positions restart at 0 and generation continues, at the cost of one prefill per
half-window of new tokens. Generations that fit in the context never shift.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from minigpt.inference.compiled import compiled_decode_step
from minigpt.inference.kv_cache import KVCache
from minigpt.inference.shared_prefix import with_shared_prefix
from minigpt.model.attention import causal_attention
from minigpt.model.transformer import Transformer


class BatchDecoder:
    """Token rows (prompt + generated), their KV cache and their next positions.

    Args:
        model: the language model (in eval mode).
        prompts: one list of token ids per row, any lengths ≥ 1.
        max_new_tokens: how many tokens will be appended at most (sizes the buffers).
        compile: run the one-token steps compiled (see the module docstring).
    """

    def __init__(
        self, model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int, compile: bool = False
    ) -> None:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("Every prompt needs at least one token (e.g. the tokenizer's bos id).")
        self.model = model
        device = model.tok_emb.weight.device
        width = max(len(p) for p in prompts)
        # Padding columns hold id 0: any valid id works, they are never attended to.
        self.tokens = torch.zeros(len(prompts), width + max_new_tokens, dtype=torch.long, device=device)
        # valid: False on left padding only; generated columns are always real tokens.
        self.valid = torch.ones_like(self.tokens, dtype=torch.bool)
        for i, prompt in enumerate(prompts):
            self.tokens[i, width - len(prompt) : width] = torch.as_tensor(prompt, dtype=torch.long)
            self.valid[i, : width - len(prompt)] = False
        self.length = width
        # The cache never needs more than block_size slots, nor more than the tokens ever fed to the model
        # (the last generated token is returned, not fed).
        self.capacity = min(model.config.block_size, max(width + max_new_tokens - 1, 1))
        # A compiled step gets one slot more than it ever fills (cache and key mask): a view of the filled
        # slots that spanned a whole buffer would be contiguous, a case the compiled graph specialises on
        # and would recompile for.
        self.cache = KVCache.for_model(model, len(prompts), self.capacity + int(compile))
        self.next_pos = torch.zeros(len(prompts), dtype=torch.long, device=device)
        self.key_valid: Tensor | None = None  # (B, capacity) while the window holds padding, else None
        self.compiled_step = compiled_decode_step(model) if compile else None
        # Logical row i lives in physical row order[i]; physical row p holds logical row inverse[p].
        # None while every row is where the caller sees it. Everything above is indexed physically.
        self.order: Tensor | None = None
        self.inverse: Tensor | None = None
        self.group = 1  # rows come in groups of this many that continue only each other (beams)
        # (group, slots) while every group's rows hold their first `slots` slots alike and decoding steps
        # read them once per group (`_share_prefix`), else None.
        self.shared_prefix: tuple[int, int] | None = None

    @property
    def batch_size(self) -> int:
        """Rows currently decoded."""
        return self.tokens.shape[0]

    def _logits(self, idx: Tensor, positions: Tensor, attn_mask: Tensor | None) -> Tensor:
        """Next-token logits (B, V) after `idx` (B, T): the LM head runs on the last position only."""
        hidden, _ = self.model.hidden_states(idx, positions=positions, attn_mask=attn_mask, kv_cache=self.cache)
        return self.model.lm_head(hidden[:, -1])

    def prefill(self, window: int | None = None) -> Tensor:
        """(Re)build the cache from the last `window` tokens of each row (default: as many as fit).

        Returns the logits for the token after them (B, V).
        """
        window = min(self.length, self.capacity if window is None else window)
        start = self.length - window
        idx, valid = self.tokens[:, start : self.length], self.valid[:, start : self.length]
        self.cache.reset()
        self._set_shared_prefix(None)  # the slots rows shared are gone
        positions = (valid.cumsum(dim=1) - 1).clamp(min=0)  # (B, T): real tokens count from 0
        self.next_pos = valid.sum(dim=1)
        attn_mask = None
        self.key_valid = None
        if not bool(valid.all()):
            self.key_valid = torch.zeros(self.batch_size, self.cache.capacity, dtype=torch.bool, device=idx.device)
            self.key_valid[:, :window] = valid
            causal = torch.ones(window, window, dtype=torch.bool, device=idx.device).tril()
            # A pad query may see only itself: a row with no allowed key would make softmax 0/0 = NaN, and
            # that NaN, stored as a key/value, would poison later layers even where it is masked out.
            eye = torch.eye(window, dtype=torch.bool, device=idx.device)
            attn_mask = (causal & valid[:, None, None, :]) | eye  # (B, 1, T, T)
        return self._logits(idx, positions, attn_mask)

    def step(self, next_ids: Tensor) -> Tensor:
        """Append `next_ids` (B,) to every row and return the logits for the token after them (B, V)."""
        if self.order is None:
            return self._physical_step(next_ids)
        return self._physical_step(next_ids[self.inverse])[self.order]

    def _physical_step(self, next_ids: Tensor) -> Tensor:
        """`step` with rows in physical order."""
        self.tokens[:, self.length] = next_ids
        self.length += 1
        if self.cache.length == self.capacity:  # context full: shift to the last half-window
            return self.prefill(max(1, self.capacity // 2))
        positions = self.next_pos.unsqueeze(1)  # (B, 1)
        self.next_pos = self.next_pos + 1
        slot = self.cache.length  # where this token's keys and values go
        if self.key_valid is not None:
            self.key_valid[:, slot] = True
        attn_mask = None if self.key_valid is None else self.key_valid[:, None, None, : slot + 1]  # (B, 1, 1, S)
        if self.compiled_step is not None:
            cache = self.cache
            logits = self.compiled_step(
                next_ids.unsqueeze(1), positions, attn_mask, slot, cache.k, cache.v, self.shared_prefix
            )
            self.cache.length += 1
            return logits
        return self._logits(next_ids.unsqueeze(1), positions, attn_mask)

    def select(self, rows: Tensor, group: int = 1) -> None:
        """Keep, reorder or repeat rows: new row i continues current row `rows[i]`.

        A selection of as many rows as there are (a beam search step) moves no row (module docstring);
        any other copies the chosen rows into place. `group` > 1 says that the selected rows come in groups
        of that many consecutive rows that will only ever continue each other (the beams of one prompt):
        their common history is then read once per group (`shared_prefix_attention`). The grouping holds
        through later selections of as many rows, and ends with the next selection of another size.
        """
        if self.order is not None:
            rows = self.order[rows]  # from now on: physical rows
        if rows.numel() == self.batch_size:
            self._follow(rows.tolist())
            return
        if rows.numel() % group != 0:
            raise ValueError(f"select: {rows.numel()} rows do not split into groups of {group}.")
        self.tokens, self.valid, self.next_pos = self.tokens[rows], self.valid[rows], self.next_pos[rows]
        if self.key_valid is not None:
            self.key_valid = self.key_valid[rows]
        self.cache.select(rows)
        self.order = self.inverse = None
        self.group = group
        self._share_prefix()

    def _follow(self, rows: list[int]) -> None:
        """New logical row i continues physical row `rows[i]`; rows move only where two continue one."""
        n = len(rows)
        order, sources, taken, seconds = [0] * n, list(range(n)), [False] * n, []
        for i, row in enumerate(rows):  # the first to continue a row stays in it
            if taken[row]:
                seconds.append(i)
            else:
                taken[row], order[i] = True, row
        free = [row for row in range(n) if not taken[row]]
        common = self.cache.common.tolist() if seconds else []
        for i in seconds:  # the others take over a row no one continues: in their group, the most alike
            source = rows[i]
            in_group = [row for row in free if row // self.group == source // self.group] or free
            row = max(in_group, key=lambda candidate: common[source][candidate])
            free.remove(row)
            order[i], sources[row] = row, source
        inverse = [0] * n
        for i, row in enumerate(order):
            inverse[row] = i
        device = self.tokens.device
        self.order = torch.tensor(order, device=device)
        self.inverse = torch.tensor(inverse, device=device)
        if seconds:
            moved = torch.tensor(sources, device=device)
            self.tokens, self.valid, self.next_pos = self.tokens[moved], self.valid[moved], self.next_pos[moved]
            if self.key_valid is not None:
                self.key_valid = self.key_valid[moved]
            self.cache.follow(sources)
        self._share_prefix()

    def _share_prefix(self) -> None:
        """Tell the cache how many leading slots all rows of every group hold alike, where that pays.

        Reading the common slots once costs a second attention call per layer, so it is used once they
        are at least half of the filled slots (beams soon share most of their history). Every row must
        be allowed at least one common slot (left padding). CPU only: the kernel it calls for the
        log-sum-exp is the CPU one.
        """
        self._set_shared_prefix(self._common_prefix())

    def _common_prefix(self) -> tuple[int, int] | None:
        """(group, slots) that `_share_prefix` uses, or None where reading the slots once does not pay."""
        cache, group = self.cache, self.group
        if group == 1 or cache.device.type != "cpu":
            return None
        groups = self.batch_size // group
        # Within each group: (group, group, groups) → the least any two rows of any group share. At most
        # all but the last slot, so that every row keeps ≥ 2 slots of its own at the next step (a part of
        # size 1 would be a shape the compiled step specialises, and recompiles, for).
        common = cache.common.view(groups, group, groups, group).diagonal(dim1=0, dim2=2)
        shared = min(int(common.amin()), cache.length - 1)
        if shared <= 0 or 2 * shared < cache.length:
            return None
        if self.key_valid is not None and not bool(self.key_valid[:, :shared].any(dim=1).all()):
            return None
        return group, shared

    def _set_shared_prefix(self, prefix: tuple[int, int] | None) -> None:
        """Record `prefix` and give the eager cache the matching attention (the compiled step builds its own)."""
        self.shared_prefix = prefix
        self.cache.attention = with_shared_prefix(prefix, causal_attention)

    def seen_tokens(self, vocab_size: int) -> Tensor:
        """Bool (B, V): which ids occur among each row's real tokens so far (for the repetition penalty)."""
        counts = torch.zeros(self.batch_size, vocab_size, dtype=torch.long, device=self.tokens.device)
        counts.scatter_add_(1, self.tokens[:, : self.length], self.valid[:, : self.length].long())
        return counts > 0 if self.order is None else counts[self.order] > 0
