"""Mixture-of-Transformers: each token goes through its modality's norms and MLP, attention stays shared;
made from a dense model it starts as that model; its folder keeps the text weights as a dense model."""

import torch
from tests_vision_helpers import tiny_vlm
from torch import nn

from minigpt.model.folder import load_model_folder
from minigpt.model.mot import ModalityState, ModalitySwitch
from minigpt.model.vision import (
    VisionLanguageModel,
    VisionTower,
    load_vision_language_model,
    save_vision_language_model,
)


def test_switch_routes_each_token_to_its_modality():
    state = ModalityState()
    switch = ModalitySwitch(nn.Linear(3, 3), state)
    torch.manual_seed(0)
    switch.image.reset_parameters()  # now the copies differ
    x = torch.randn(2, 4, 3)
    state.image_mask = torch.tensor([[False, True, True, False], [True, False, False, False]])
    out = switch(x)
    mask = state.image_mask
    torch.testing.assert_close(out[mask], switch.image(x[mask]))
    torch.testing.assert_close(out[~mask], switch.text(x[~mask]))
    out.sum().backward()  # both copies get gradients from their own tokens only
    assert switch.text.weight.grad is not None and switch.image.weight.grad is not None
    state.image_mask = None
    torch.testing.assert_close(switch(x), switch.text(x))


def mot_from(dense: VisionLanguageModel) -> VisionLanguageModel:
    import copy

    config = copy.deepcopy(dense.tower.config)
    config.mot = True
    tower = VisionTower(config, dense.lm.config.n_embd)
    tower.load_state_dict(dense.tower.state_dict())
    return VisionLanguageModel(copy.deepcopy(dense.lm), tower, dense.image_id)


def test_mot_made_from_a_dense_model_starts_as_it_and_text_stays_dense():
    dense, tokenizer = tiny_vlm()
    mot = mot_from(dense)
    image_id = dense.image_id
    ids = torch.tensor([tokenizer.encode("ab") + [image_id] * 4 + tokenizer.encode("cd")])
    images = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(mot(ids, images)[0], dense(ids, images)[0])
    # Change only the image copies: text-only batches still give the dense model's output …
    with torch.no_grad():
        for name, p in mot.lm.named_parameters():
            if ".image." in name:
                p.add_(0.1)
    text = torch.tensor([tokenizer.encode("abc d")])
    assert torch.equal(mot(text)[0], dense(text)[0])
    # … and with images, the tokens before the first image are untouched, the rest change.
    a, b = mot(ids, images)[0], dense(ids, images)[0]
    assert torch.equal(a[:, :2], b[:, :2]) and not torch.allclose(a[:, 2:], b[:, 2:])


def test_mot_folder_round_trip_keeps_a_dense_text_model(tmp_path):
    dense, tokenizer = tiny_vlm()
    mot = mot_from(dense)
    with torch.no_grad():
        for name, p in mot.lm.named_parameters():
            if ".image." in name:
                p.mul_(1.5)
    folder = save_vision_language_model(tmp_path / "model", mot, tokenizer)
    loaded, _ = load_vision_language_model(folder)
    ids = torch.tensor([tokenizer.encode("ab") + [dense.image_id] * 4 + tokenizer.encode("c")])
    images = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(loaded(ids, images)[0], mot(ids, images)[0])
    text_lm, _ = load_model_folder(folder)  # every text tool reads the text weights as a dense model
    text = torch.tensor([tokenizer.encode("abc")])
    torch.testing.assert_close(text_lm(text)[0], mot(text)[0])
