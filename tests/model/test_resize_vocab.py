"""`Transformer.resize_vocab`: old rows and old logits kept, new rows at the mean, tying preserved."""

import pytest
import torch

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer


@pytest.mark.parametrize("tied", [True, False])
def test_resize_keeps_old_rows_and_logits(tied):
    torch.manual_seed(0)
    config = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=10, tie_embeddings=tied)
    model = Transformer(config)
    idx = torch.randint(0, 10, (2, 5))
    before, _ = model(idx)
    old = model.tok_emb.weight.detach().clone()
    model.resize_vocab(14)
    after, _ = model(idx)
    assert model.config.vocab_size == 14 and after.shape == (2, 5, 14)
    torch.testing.assert_close(after[..., :10], before)
    torch.testing.assert_close(model.tok_emb.weight[:10], old)
    # New rows sit near the mean of the old ones (noise of init_std), not at an arbitrary point.
    assert (model.tok_emb.weight[10:] - old.mean(0)).abs().max() < 6 * model.config.init_std
    assert (model.lm_head.weight is model.tok_emb.weight) == tied
    assert model.lm_head.weight.shape == (14, 16)
    with pytest.raises(ValueError, match="only grows"):
        model.resize_vocab(12)
