"""The text-to-mel model: length regulation, padding that changes nothing, the saved folder reads back."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.model.tts import (
    TextToMel,
    TTSConfig,
    length_regulate,
    load_text_to_mel,
    save_text_to_mel,
    sinusoidal_positions,
)
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError


def tiny_tts(n_mels: int = 6, frames_per_step: int = 1) -> TextToMel:
    torch.manual_seed(0)
    encoder = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=12))
    return TextToMel(
        encoder,
        TTSConfig(
            n_mels=n_mels,
            decoder_layers=1,
            max_frames=64,
            frames_per_step=frames_per_step,
            duration_hidden=8,
            dropout=0.0,
        ),
    ).eval()


def test_length_regulator_repeats_each_row_its_duration() -> None:
    hidden = torch.arange(6.0).view(1, 3, 2)  # rows [0, 1], [2, 3], [4, 5]
    frames, mask = length_regulate(hidden.expand(2, 3, 2), torch.tensor([[2, 0, 1], [1, 1, 1]]))
    assert frames[0].tolist() == [[0, 1], [0, 1], [4, 5]]
    assert frames[1].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert mask.tolist() == [[True, True, True], [True, True, True]]
    frames, mask = length_regulate(hidden, torch.tensor([[1, 0, 0]]))
    assert frames.shape == (1, 1, 2) and mask.tolist() == [[True]]


def test_sinusoidal_positions_follow_the_formula() -> None:
    table = sinusoidal_positions(10, 8)
    p, i = 7, 1  # PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(same)
    angle = p / 10000 ** (2 * i / 8)
    assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("frames_per_step", [1, 2])
def test_padding_does_not_change_an_utterance(frames_per_step: int) -> None:
    # With r = 2 the longer utterance's 7 frames take 4 decoder positions and the last one is cut off.
    model = tiny_tts(frames_per_step=frames_per_step)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    valid = torch.tensor([[True, True, True, True], [True, True, False, False]])
    durations = torch.tensor([[2, 1, 3, 1], [2, 2, 5, 5]])  # the padded durations are ignored
    mel, frame_valid, log_d = model(ids, valid, durations)
    alone, alone_valid, alone_d = model(ids[1:, :2], valid[1:, :2], durations[1:, :2])
    assert frame_valid.sum(1).tolist() == [7, 4] and alone.shape == (1, 4, 6)
    torch.testing.assert_close(mel[1, :4], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_d[1, :2], alone_d[0], atol=1e-5, rtol=1e-5)


def test_synthesis_uses_predicted_durations_and_refuses_long_utterances() -> None:
    model = tiny_tts()
    with torch.no_grad():
        model.duration.out.bias.fill_(math.log(1 + 3))  # every character lasts exp(ℓ) − 1 = 3 frames
        model.duration.out.weight.zero_()
    mel, frame_valid = model.synthesise(torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.bool))
    assert mel.shape == (1, 9, 6) and frame_valid.all()
    mel, _ = model.synthesise(torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.bool), speed=3.0)
    assert mel.shape == (1, 3, 6)
    with torch.no_grad():
        model.duration.out.bias.fill_(math.log(1 + 30))
    with pytest.raises(ValueError, match="max_frames=64"):
        model.synthesise(torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.bool))


def test_model_folder_round_trip(tmp_path) -> None:
    model = tiny_tts()
    tokenizer = CharTokenizer.train("0123456789 ")
    save_text_to_mel(tmp_path / "model", model, tokenizer)
    loaded, loaded_tokenizer = load_text_to_mel(tmp_path)
    ids, valid, durations = torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.bool), torch.tensor([[3, 2]])
    torch.testing.assert_close(loaded(ids, valid, durations)[0], model(ids, valid, durations)[0])
    assert loaded_tokenizer.encode("42") == tokenizer.encode("42")
    (tmp_path / "model" / "tts.safetensors").unlink()
    with pytest.raises(ConfigError, match="stage=tts"):
        load_text_to_mel(tmp_path)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="duration_kernel"):
        TTSConfig(duration_kernel=4)
    with pytest.raises(ConfigError, match="Unknown stage.tts keys"):
        TTSConfig.from_dict({"n_mel": 80})
