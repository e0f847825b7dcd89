"""`BatchDecoder` row selection: whatever physical row a sequence lives in, it decodes its own history."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.decoder import BatchDecoder


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
