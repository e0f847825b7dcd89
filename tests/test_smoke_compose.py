"""The default config composes, a tiny run trains end to end, and its model folder holds what it trained."""

import pytest
from hydra.utils import instantiate

from minigpt.evaluation.perplexity import evaluate_lm
from minigpt.model.folder import load_model_folder
from minigpt.run import train


def test_model_folder_reproduces_the_runs_validation_loss(compose_train, tmp_path):
    cfg = compose_train("trainer.max_steps=5", "trainer.val_check_interval=5", "trainer.limit_val_batches=null")
    metrics = train(cfg)
    model, tokenizer = load_model_folder(tmp_path / "run" / "model")
    datamodule = instantiate(cfg.data)
    datamodule.attach_tokenizer(tokenizer)
    reloaded = evaluate_lm(model, datamodule.val_dataloader())
    assert reloaded["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-5)
