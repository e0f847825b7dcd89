"""`stage=reward`: the reward model learns held-out preferences; the run writes a loadable reward folder."""

import lightning as L
import pytest
import torch
from preference_fixtures import OPTIM, base_model_folder, write_pairs

from minigpt.data.preferences import PreferenceDataModule
from minigpt.model.folder import load_model_folder
from minigpt.model.heads import load_reward_model
from minigpt.run import train
from minigpt.stages.inputs import prepare_fit
from minigpt.stages.reward import RewardStage
from minigpt.utils.errors import ConfigError


def quiet_trainer(max_steps: int) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps, val_check_interval=max_steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
        check_val_every_n_epoch=None, max_epochs=-1, inference_mode=False,
    )  # fmt: skip


def test_reward_model_beats_chance_on_held_out_pairs(tmp_path):
    folder = base_model_folder(tmp_path / "base")
    _, tokenizer = load_model_folder(folder)
    dm = PreferenceDataModule(path=str(write_pairs(tmp_path / "p.jsonl")), batch_size=16, val_fraction=0.25, seed=0)
    dm.attach_tokenizer(tokenizer)
    torch.manual_seed(0)
    stage = RewardStage(model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(folder), center_coef=0.01)
    prepare_fit(stage, dm)  # data.seq_len: null → the model's context
    trainer = quiet_trainer(60)
    before = trainer.validate(stage, datamodule=dm, verbose=False)[0]
    trainer.fit(stage, datamodule=dm)
    after = trainer.callback_metrics
    assert before["val/accuracy"] == 0.0  # the zero-initialised head ties every pair
    assert float(after["val/accuracy"]) >= 0.85 and float(after["val/margin"]) > 0.5, dict(after)


def test_reward_run_writes_a_reward_folder(tmp_path, compose_train):
    folder = base_model_folder(tmp_path / "base")
    cfg = compose_train(
        "stage=reward", f"init_from={folder}", "data=preferences", f"data.path={write_pairs(tmp_path / 'p.jsonl', 40)}",
        "data.batch_size=8", "stage.use_margin=true", "trainer.max_steps=3", "trainer.val_check_interval=3",
        "logger=csv",
        toy_data=False,
    )  # fmt: skip
    metrics = train(cfg)
    assert {"val/accuracy", "val/margin", "train/accuracy"} <= set(metrics)
    scorer = load_reward_model(tmp_path / "run")
    assert scorer(["say: abc"], ["aaa"]).shape == (1,)
    # Training on from a reward model folder continues its head as well as its trunk.
    again = RewardStage(model_config=None, optim=OPTIM, init_from=str(tmp_path / "run" / "model"))
    torch.testing.assert_close(again.head.proj.weight, scorer.model.head.proj.weight, rtol=0, atol=0)
    assert again.head.proj.weight.abs().sum() > 0


def test_negative_centering_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="center_coef=-1"):
        RewardStage(model_config=None, optim=OPTIM, init_from=str(base_model_folder(tmp_path / "b")), center_coef=-1)
