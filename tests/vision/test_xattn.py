"""Gated cross-attention (Flamingo): closed gates give the LM's own output; each row's tokens see only
their row's images, and only those whose tag came before them; the layers save and load with the tower."""

import pytest
import torch
from tests_vision_helpers import tiny_vlm

from minigpt.model.vision import VisionConfig, load_vision_language_model, save_vision_language_model
from minigpt.model.xattn import media_for_rows
from minigpt.tokenizer.chat import IMAGE_TOKEN
from minigpt.utils.errors import ConfigError


def open_gates(model) -> None:
    with torch.no_grad():
        for layer in model.xattn:
            layer.attn_gate.fill_(1.0)
            layer.ffw_gate.fill_(1.0)


def test_closed_gates_leave_the_lm_unchanged_and_open_ones_let_the_image_in():
    model, tokenizer = tiny_vlm("cnn", fusion="xattn")
    tag = tokenizer.special_id(IMAGE_TOKEN)
    ids = torch.tensor([tokenizer.encode("ab") + [tag] + tokenizer.encode("cd")])
    plain, _ = model.lm(ids)  # outside a call the hooks add nothing: the text-only LM
    with_image, _ = model(ids, torch.rand(1, 3, 8, 8))
    torch.testing.assert_close(with_image, plain)  # tanh(0) = 0: exactly the LM at initialisation
    open_gates(model)
    a, _ = model(ids, torch.zeros(1, 3, 8, 8))
    b, _ = model(ids, torch.ones(1, 3, 8, 8))
    # tokens before the tag never see the image; the tag and what follows do
    assert torch.equal(a[:, :2], b[:, :2]) and not torch.allclose(a[:, 2:], b[:, 2:])
    torch.testing.assert_close(model.lm(ids)[0], plain)  # the state is cleared after each call


def test_each_row_sees_its_own_images_from_their_tags_on():
    tag = 9
    ids = torch.tensor([[1, 9, 2, 9, 3], [9, 4, 5, 6, 7], [1, 2, 3, 4, 5]])
    images = torch.arange(3 * 2 * 1, dtype=torch.float).view(3, 2, 1) + 1  # 3 images × 2 vectors × width 1
    media, visible = media_for_rows(images, ids, tag)
    assert media.shape == (3, 4, 1) and visible.shape == (3, 5, 4)
    torch.testing.assert_close(media[0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))  # row 0: images 0 and 1
    torch.testing.assert_close(media[1, :2, 0], torch.tensor([5.0, 6.0]))  # row 1: image 2
    expected_row0 = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]).bool()
    assert torch.equal(visible[0], expected_row0)
    assert visible[1, :, :2].all() and not visible[1, :, 2:].any()  # no second image in row 1
    assert not visible[2].any()  # a text-only row sees nothing
    with pytest.raises(ValueError, match="2 images"):
        media_for_rows(images[:2], ids, tag)


def test_xattn_layers_round_trip_through_the_model_folder(tmp_path):
    model, tokenizer = tiny_vlm("cnn", fusion="xattn")
    open_gates(model)
    folder = save_vision_language_model(tmp_path / "model", model, tokenizer)
    loaded, _ = load_vision_language_model(folder)
    ids = torch.tensor([[1, model.image_id, 2, 3]])
    images = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(loaded(ids, images)[0], model(ids, images)[0])
    assert loaded.tower.config.placeholders == 1


def test_xattn_with_mot_is_refused():
    with pytest.raises(ConfigError, match="vision.mot"):
        VisionConfig(kind="cnn", image_size=8, num_tokens=4, fusion="xattn", mot=True)
