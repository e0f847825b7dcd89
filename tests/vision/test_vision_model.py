"""The image encoders, the splice of projected patches at `<|image|>` placeholders, and the model folder."""

import pytest
import torch
from tests_vision_helpers import tiny_vlm

from minigpt.model.vision import (
    VisionConfig,
    load_vision_language_model,
    save_vision_language_model,
    splice_images,
)
from minigpt.tokenizer.chat import IMAGE_TOKEN
from minigpt.utils.errors import ConfigError


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_encoders_give_num_tokens_vectors_of_the_lm_width(kind):
    model, _ = tiny_vlm(kind)
    assert model.tower(torch.rand(3, 3, 8, 8)).shape == (3, 4, 32)
    with pytest.raises(ValueError, match="built for"):
        model.tower(torch.rand(1, 3, 16, 16))


def test_vit_blocks_attend_both_ways():
    # The shared Block is causal by default; the ViT's all-True mask lets patch 0 see the last patch.
    model, _ = tiny_vlm("vit")
    images = torch.rand(1, 3, 8, 8)
    changed = images.clone()
    changed[..., 4:, 4:] += 1.0  # only the last (bottom-right) patch
    first = model.tower.encoder(images)[0, 0]
    assert not torch.allclose(first, model.tower.encoder(changed)[0, 0])


def test_config_refuses_a_patch_grid_that_is_not_num_tokens():
    with pytest.raises(ConfigError, match="patch_size"):
        VisionConfig(kind="vit", image_size=24, patch_size=4, num_tokens=16)
    with pytest.raises(ConfigError, match="square"):
        VisionConfig(kind="cnn", num_tokens=10)


def test_image_vectors_land_exactly_at_the_placeholders_in_reading_order():
    image_id = 9
    ids = torch.tensor([[1, 9, 9, 2, 9, 9], [9, 9, 3, 4, 5, 6]])
    embeds = torch.zeros(2, 6, 3)
    images = torch.arange(3 * 2 * 3, dtype=torch.float).view(3, 2, 3) + 1  # 3 images × 2 tokens × width 3
    out = splice_images(embeds, ids, image_id, images)
    torch.testing.assert_close(out[0, [1, 2]], images[0])
    torch.testing.assert_close(out[0, [4, 5]], images[1])
    torch.testing.assert_close(out[1, [0, 1]], images[2])
    assert out[ids != image_id].abs().sum() == 0  # text positions untouched
    with pytest.raises(ValueError, match=r"6 <\|image\|> placeholders but 2 images"):
        splice_images(embeds, ids, image_id, images[:2])


def test_text_only_path_is_unchanged():
    model, tokenizer = tiny_vlm()
    ids = torch.tensor([tokenizer.encode("what is 12?")])
    plain, _ = model.lm(ids)
    via_embeds, _ = model.lm(ids, inputs_embeds=model.lm.tok_emb(ids))
    without_images, _ = model(ids, None)
    assert torch.equal(plain, via_embeds) and torch.equal(plain, without_images)
    with pytest.raises(ValueError, match="no images"):
        model(torch.tensor([[tokenizer.special_id(IMAGE_TOKEN)] * 4]), None)


def test_images_change_only_the_logits_at_and_after_the_placeholders():
    model, tokenizer = tiny_vlm()
    image_id = tokenizer.special_id(IMAGE_TOKEN)
    ids = torch.tensor([tokenizer.encode("ab") + [image_id] * 4 + tokenizer.encode("cd")])
    a, _ = model(ids, torch.zeros(1, 3, 8, 8))
    b, _ = model(ids, torch.ones(1, 3, 8, 8))
    assert torch.equal(a[:, :2], b[:, :2]) and not torch.allclose(a[:, 2:], b[:, 2:])


def test_model_folder_round_trip(tmp_path):
    model, tokenizer = tiny_vlm("cnn")
    folder = save_vision_language_model(tmp_path / "model", model, tokenizer)
    loaded, loaded_tokenizer = load_vision_language_model(folder)
    ids = torch.tensor([[1] + [model.image_id] * 4 + [2]])
    images = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(loaded(ids, images)[0], model(ids, images)[0])
    assert loaded_tokenizer.special_id(IMAGE_TOKEN) == model.image_id
