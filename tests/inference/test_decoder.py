"""`BatchDecoder` row selection: whatever physical row a sequence lives in, it decodes its own history."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.decoder import BatchDecoder
from minigpt.model.attention import causal_attention


def next_logits(model: torch.nn.Module, history: list[int]) -> torch.Tensor:
    """Logits after `history`, from one plain forward pass without a cache."""
    with torch.no_grad():
        return model(torch.tensor([history]))[0][0, -1]


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_beam_selects_keep_each_row_on_its_own_history(tiny_model, family: str) -> None:
    model = tiny_model(family, init_std=0.3)
    prompts = [[5, 6, 7], [1, 2], [9, 3, 9, 3]]
    histories = [list(p) for p in prompts]
    decoder = BatchDecoder(model, prompts, max_new_tokens=8)
    with torch.no_grad():
        decoder.prefill()
        # As many rows as before: beam steps (rows continued twice, dropped, swapped); then fewer rows.
        for rows in ([0, 0, 2], [2, 0, 1], [1, 1, 1], [0, 2, 1], [2, 2, 0], [1, 0]):
            decoder.select(torch.tensor(rows))
            histories = [list(histories[r]) for r in rows]
            next_ids = torch.randint(0, 64, (len(rows),))
            for history, token in zip(histories, next_ids.tolist()):
                history.append(token)
            logits = decoder.step(next_ids)
            for row, history in enumerate(histories):
                torch.testing.assert_close(logits[row], next_logits(model, history), atol=1e-5, rtol=0)
    assert decoder.order is None  # the last select (fewer rows) put every row back in place


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_grouped_rows_read_their_shared_history_once_and_decode_the_same(tiny_model, family: str) -> None:
    """Beams of two left-padded prompts: attention over the groups' shared slots gives the plain logits."""
    model = tiny_model(family, init_std=0.3)
    prompts = [[5, 6, 7, 8], [1, 2]]
    decoder = BatchDecoder(model, prompts, max_new_tokens=8)
    with torch.no_grad():
        decoder.prefill()
        decoder.select(torch.tensor([0, 0, 0, 1, 1, 1]), group=3)
        # Every row of a group holds the 4-slot prompt window; all but the last slot count as shared, so
        # that each row attends to ≥ 2 slots of its own at the next step.
        assert decoder.shared_prefix == (3, 3)
        histories = [list(prompts[0])] * 3 + [list(prompts[1])] * 3
        used = 0
        for rows in ([0, 1, 2, 3, 4, 5], [0, 0, 1, 3, 3, 3], [1, 1, 0, 5, 4, 3], [2, 2, 2, 4, 3, 3]):
            decoder.select(torch.tensor(rows))
            used += decoder.shared_prefix is not None
            # The eager steps attend through the backend the decoder set on its cache.
            assert (decoder.cache.attention is causal_attention) == (decoder.shared_prefix is None)
            histories = [list(histories[r]) for r in rows]
            next_ids = torch.randint(0, 64, (6,))
            for history, token in zip(histories, next_ids.tolist()):
                history.append(token)
            logits = decoder.step(next_ids)
            for row, history in enumerate(histories):
                torch.testing.assert_close(logits[row], next_logits(model, history), atol=1e-5, rtol=0)
    assert used == 4
