"""`vision.pretrain`: the encoder learns the sources' labels as a classifier (well above chance in a few
dozen steps), the loss is the mean cross-entropy over heads, and sources without labels are refused."""

import math

import pytest
import torch

from minigpt.data.vision.digits import Digits
from minigpt.data.vision.jsonl import ImageChatFile
from minigpt.data.vision.shapes import SLOT_CLASSES, Shapes, Thing, slot_classes
from minigpt.model.vision import VisionConfig, VisionTower
from minigpt.stages.vision_pretrain import PretrainConfig, head_loss, pretrain_encoder
from minigpt.utils.errors import ConfigError


def test_head_loss_is_the_mean_cross_entropy_over_heads():
    # Uniform logits over 4 and 2 classes: CE = log 4 and log 2, mean (log 4 + log 2) / 2.
    logits = [torch.zeros(3, 4), torch.zeros(3, 2)]
    labels = torch.tensor([[0, 1], [3, 0], [2, 1]])
    assert head_loss(logits, labels).item() == pytest.approx((math.log(4) + math.log(2)) / 2)


def test_scene_labels_name_each_slot():
    things = [Thing(0, "green", "circle", 0), Thing(2, "red", "triangle", 3)]
    assert slot_classes(things) == [1 + 1 * 3 + 1, 0, 1 + 0 * 3 + 2]  # green = colour 1, circle = shape 1
    data = Shapes(num_held_out=20).labelled("val", None, 24)
    assert data.images.shape == (20, 3, 24, 24) and data.labels.shape == (20, 3)
    assert data.classes == (SLOT_CLASSES,) * 3 and data.labels.max() < SLOT_CLASSES


def test_encoder_learns_digits_well_above_chance():
    torch.manual_seed(0)
    encoder = VisionTower(VisionConfig(kind="cnn", image_size=8, num_tokens=4, n_embd=16), 32).encoder
    before = [p.detach().clone() for p in encoder.parameters()]
    scores = pretrain_encoder(encoder, {"digits": Digits()}, PretrainConfig(steps=60, batch_size=32), 8)
    assert scores["digits"] > 0.6, scores  # chance: 0.1
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters()))


def test_sources_without_labels_are_refused(tmp_path):
    encoder = VisionTower(VisionConfig(kind="cnn", image_size=8, num_tokens=4, n_embd=16), 32).encoder
    with pytest.raises(ConfigError, match="vision.pretrain needs a data source with class labels"):
        pretrain_encoder(encoder, {"file": ImageChatFile(str(tmp_path / "x.jsonl"))}, PretrainConfig(steps=1), 8)
    with pytest.raises(ConfigError, match="steps"):
        PretrainConfig(steps=-1)
