"""Mixture-of-Transformers: each token goes through its modality's norms, MLP and attention projections,
attention itself stays global; made from a dense model it starts as that model; its folder keeps the text
weights as a dense model."""

import torch
import torch.nn.functional as F
from tests_vision_helpers import tiny_vlm
from torch import nn

from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder
from minigpt.model.mot import ModalityState, ModalitySwitch, apply_mot
from minigpt.model.transformer import Transformer
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


def test_attention_projections_are_per_modality_and_attention_is_global():
    """Reference by hand, token by token: q, k, v (and the QK-norms) from the token's own modality's weights,
    one causal softmax over every earlier token of either modality, the output projection of the token's
    modality (Liang et al. 2024, Algorithm 1)."""
    torch.manual_seed(0)
    lm = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=5, qk_norm=True))
    state = ModalityState()
    apply_mot(lm, state)
    attn = lm.blocks[0].attn
    with torch.no_grad():  # make every image copy differ from its text copy
        for name, p in attn.named_parameters():
            if ".image." in name:
                p.add_(torch.randn_like(p))
    x = torch.randn(1, 6, 8)
    image = torch.tensor([[False, True, True, False, False, True]])
    state.image_mask = image
    out = attn(x, None, None, None)

    heads, hs = 2, 4
    q, k, v, copies = [], [], [], []
    for t in range(6):
        copy = "image" if image[0, t] else "text"
        qkv = getattr(attn.qkv, copy)(x[0, t]).view(3 * heads, hs)
        q.append(getattr(attn.q_norm, copy)(qkv[:heads]))
        k.append(getattr(attn.k_norm, copy)(qkv[heads : 2 * heads]))
        v.append(qkv[2 * heads :])
        copies.append(getattr(attn.proj, copy))
    q, k, v = (torch.stack(z, dim=1)[None] for z in (q, k, v))  # (1, heads, T, hs)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)[0].transpose(0, 1).reshape(6, heads * hs)
    expected = torch.stack([copies[t](y[t]) for t in range(6)])
    torch.testing.assert_close(out[0], expected)
    # Global attention: changing an image token changes the text tokens after it, not those before.
    x2 = x.clone()
    x2[0, 1] += 1.0
    out2 = attn(x2, None, None, None)
    assert torch.equal(out2[0, 0], out[0, 0]) and not torch.allclose(out2[0, 3], out[0, 3])


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
    untied = set()
    with torch.no_grad():
        for name, p in mot.lm.named_parameters():
            if ".image." in name:
                p.add_(0.1)
                untied.add(name.split(".image.")[0].split(".", 2)[2])
    assert untied == {"attn_norm", "ffn_norm", "ffn", "attn.qkv", "attn.proj"}  # no QK-norm in this model
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
                p.add_(torch.randn_like(p) * 0.1)  # every image copy, the attention projections' too
    folder = save_vision_language_model(tmp_path / "model", mot, tokenizer)
    loaded, _ = load_vision_language_model(folder)
    ids = torch.tensor([tokenizer.encode("ab") + [dense.image_id] * 4 + tokenizer.encode("c")])
    images = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(loaded(ids, images)[0], mot(ids, images)[0])
    text_lm, _ = load_model_folder(folder)  # every text tool reads the text weights as a dense model
    text = torch.tensor([tokenizer.encode("abc")])
    torch.testing.assert_close(text_lm(text)[0], mot(text)[0])
