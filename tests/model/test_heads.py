"""Scalar head and reward-model folders: score at the last real token; a marked folder that loads back."""

import pytest
import torch

from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.model.heads import RewardModel, ScalarHead, is_reward_folder, load_reward_model, save_reward_model
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens
from minigpt.utils.errors import ConfigError


def reward_model(vocab: int = 40) -> RewardModel:
    torch.manual_seed(0)
    trunk = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=vocab)).eval()
    model = RewardModel(trunk)
    torch.nn.init.normal_(model.head.proj.weight)  # a head at its zero init would score everything 0
    return model


def test_score_is_read_at_the_last_real_token_and_padding_is_ignored():
    model = reward_model()
    row = torch.tensor([[5, 6, 7, 8]])
    alone, _ = model(row, torch.tensor([4]))
    padded = torch.tensor([[5, 6, 7, 8, 0, 0], [5, 6, 7, 8, 9, 3]])  # same real tokens, different padding
    scores, _ = model(padded, torch.tensor([4, 4]))
    torch.testing.assert_close(scores, alone.expand(2), atol=1e-5, rtol=0)
    hidden, _ = model.trunk.hidden_states(row)
    torch.testing.assert_close(alone, model.head.proj(hidden[:, 3]).squeeze(-1))


def test_head_starts_at_zero():
    head = ScalarHead(8)
    assert float(head(torch.randn(3, 5, 8), torch.tensor([1, 3, 5])).detach().abs().sum()) == 0.0


def test_reward_folder_round_trip_and_plain_loading_still_works(tmp_path):
    tokenizer = CharTokenizer.train("abcdefgh ?")
    add_chat_tokens(tokenizer)
    model = reward_model(tokenizer.vocab_size)
    folder = save_reward_model(tmp_path / "rm", model, tokenizer)
    assert is_reward_folder(folder) and (folder / "reward_head.safetensors").exists()
    scorer = load_reward_model(tmp_path / "rm")
    scores = scorer(["abc", "abc"], ["cba", "hh"])
    assert scores.shape == (2,) and scores[0] != scores[1]
    torch.testing.assert_close(scorer.score(["abc"], ["cba"]), scores[:1])
    # The scorer matches the model it was saved from, on the chat rendering of the pair.
    expected = reference_score(model, tokenizer, "abc", "cba")
    torch.testing.assert_close(scores[0], expected, atol=1e-5, rtol=0)
    trunk, _ = load_model_folder(folder)  # an LM loader still gets the trunk (with its LM head)
    assert isinstance(trunk, Transformer)


def reference_score(model: RewardModel, tokenizer, prompt: str, completion: str) -> torch.Tensor:
    from minigpt.tokenizer.chat import render_chat

    ids = render_chat(tokenizer, [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}])[0]
    with torch.no_grad():
        return model(torch.tensor([ids]), torch.tensor([len(ids)]))[0][0]


def test_plain_model_folder_is_not_a_reward_model(tmp_path):
    tokenizer = CharTokenizer.train("abc")
    folder = save_model_folder(tmp_path / "lm", reward_model(tokenizer.vocab_size).trunk, tokenizer)
    assert not is_reward_folder(folder)
    with pytest.raises(ConfigError, match="not a reward model folder"):
        load_reward_model(folder)
