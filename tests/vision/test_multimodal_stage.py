"""`stage=multimodal`: a tiny model learns an image question above chance; the projector-only stage leaves
the LM bit-identical; the run's model folder loads back with its vision tower; `evaluate.py eval=vision`."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tests_vision_helpers import OneSquare

from minigpt.cli.vision_chat import continue_with_images
from minigpt.data.vision.datamodule import VisionChatDataModule
from minigpt.data.vision.shapes import COLOURS
from minigpt.evaluation.vision import evaluate_vision_run, exact_matches, greedy_answer
from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.model.vision import load_vision_language_model
from minigpt.stages.inputs import prepare_fit
from minigpt.stages.multimodal import MultimodalStage
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

OPTIM = {
    "lr": 3e-3,
    "weight_decay": 0.0,
    "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True},
    "scheduler": None,
}
VISION = {
    "encoder": "cnn_tiny",
    "image_size": 12,
    "num_tokens": 4,
    "encoders": {"cnn_tiny": {"kind": "cnn", "channels": 3, "n_embd": 32}},
}


@pytest.fixture
def base_model(tmp_path):
    """A small chat-less "pretrained" model folder."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz? ")
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=tokenizer.vocab_size))
    return save_model_folder(tmp_path / "base", model, tokenizer)


def build(init_from, train: str) -> MultimodalStage:
    L.seed_everything(0)
    return MultimodalStage(model_config=None, optim=OPTIM, init_from=str(init_from), vision={**VISION, "train": train})


def fit(stage: MultimodalStage, steps: int) -> VisionChatDataModule:
    dm = VisionChatDataModule({"squares": OneSquare()}, image_size=12, num_train=512, num_val=64)
    dm.attach_tokenizer(stage.tokenizer)
    prepare_fit(stage, dm)
    trainer = L.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(stage, datamodule=dm)
    return dm


def test_tiny_model_learns_a_four_way_image_question(base_model, tmp_path):
    stage = build(base_model, "all")
    fit(stage, 80)
    test = OneSquare().examples("test", 64, 12)
    accuracy = float(np.mean(exact_matches(stage.vlm, stage.tokenizer, test)))
    assert accuracy >= 0.6, accuracy  # chance is 0.25 (4 colours, balanced)
    answer = greedy_answer(stage.vlm, stage.tokenizer, test[0])
    assert answer in COLOURS
    # generate image=: the same greedy answer from the rendered prompt with an <image> marker and a file
    np.save(tmp_path / "square.npy", test[0].images[0])
    prompt = "<|bos|><|user|><image> colour?<|end|><|assistant|>"
    assert continue_with_images(stage.vlm, stage.tokenizer, prompt, [str(tmp_path / "square.npy")], 8) == answer
    with pytest.raises(ConfigError, match="2 images"):
        continue_with_images(stage.vlm, stage.tokenizer, prompt, [str(tmp_path / "square.npy")] * 2, 8)
    # the samples callback's text: a validation question, the model's answer and the gold one
    sample = stage.sample_texts(2)
    assert len(sample) == 2 and sample[0].startswith("[colour] colour? → ") and "(gold: " in sample[0]
    # The model folder holds the tower and answers the same after loading.
    folder = stage.save_model_folder(tmp_path / "model")
    loaded, tokenizer = load_vision_language_model(folder)
    assert float(np.mean(exact_matches(loaded, tokenizer, test))) == accuracy
    lm, _ = load_model_folder(folder)  # every text tool still reads the folder
    assert lm.config.extra["vision"]["kind"] == "cnn"
    # evaluate.py eval=vision: the same accuracy on the run's data, the prior, and the grid of answers.
    data = OmegaConf.create({"sources": {"squares": {"_target_": "tests_vision_helpers.OneSquare"}}})
    report = evaluate_vision_run(folder, data, 64, tmp_path)
    score = report["scores"]["squares/colour"]
    assert score["accuracy"] == accuracy and score["n"] == 64 and score["prior"] <= 0.5
    assert Path(report["grid"]).stat().st_size > 0


def test_projector_only_stage_leaves_the_lm_and_encoder_bit_identical(base_model):
    start, _ = load_model_folder(base_model)
    stage = build(base_model, "projector")
    before = {k: v.clone() for k, v in stage.vlm.state_dict().items()}  # the LM with its grown token rows
    fit(stage, 3)
    after = stage.vlm.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("tower.projector.") for k in changed), changed
    rows = start.config.vocab_size  # and the pretrained rows are the folder's own
    assert torch.equal(stage.model.tok_emb.weight[:rows], start.tok_emb.weight)
    trained = {id(p) for group in stage.param_groups(0.1) for p in group["params"]}
    assert trained == {id(p) for p in stage.vlm.tower.projector.parameters()}


def test_cross_attention_fusion_learns_the_question_too(base_model):
    stage = MultimodalStage(
        model_config=None, optim=OPTIM, init_from=str(base_model), vision={**VISION, "train": "all", "fusion": "xattn"}
    )
    dm = fit(stage, 80)
    assert dm.image_tokens == 1  # data.image_tokens null → one tag per image
    dm.image_tokens = 4
    with pytest.raises(ConfigError, match="data.image_tokens=4"):
        stage._fit_placeholders(dm)
    test = OneSquare().examples("test", 64, 12)
    assert float(np.mean(exact_matches(stage.vlm, stage.tokenizer, test))) >= 0.6  # chance 0.25
    assert all(float(layer.attn_gate) != 0.0 for layer in stage.vlm.xattn)  # the gates opened


def test_pretrain_then_freeze_keeps_the_encoder_fixed_and_lora_trains_adapters_only(base_model, tmp_path):
    vision = {**VISION, "train": "all", "pretrain": {"steps": 30, "batch_size": 32, "freeze": True}}
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["qkv", "proj", "fc"]}
    L.seed_everything(0)
    stage = MultimodalStage(model_config=None, optim=OPTIM, init_from=str(base_model), vision=vision, lora=lora)
    fit(stage, 2)
    assert stage.pretrain_scores["squares"] > 0.5  # colour of one square, chance 0.25
    trained = {id(p) for group in stage.param_groups(0.1) for p in group["params"]}
    names = {n for n, p in stage.vlm.named_parameters() if id(p) in trained}
    assert not any(n.startswith("tower.encoder.") for n in names)  # frozen after pre-training
    assert all(n.startswith("tower.projector.") or "lora_" in n or n == "lm.tok_emb.weight" for n in names), names
    folder = stage.save_model_folder(tmp_path / "model")  # the LoRA-merged LM with its tower
    loaded, _ = load_vision_language_model(folder)
    test = OneSquare().examples("test", 8, 12)
    assert exact_matches(loaded, stage.tokenizer, test) == exact_matches(stage.vlm, stage.tokenizer, test)
