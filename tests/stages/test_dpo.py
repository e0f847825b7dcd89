"""`stage=dpo`: every loss raises the held-out margin and the gold score of samples; the reference never
moves (a frozen copy, or the base weights under LoRA); precomputed reference log-probs change nothing."""

from pathlib import Path

import lightning as L
import pytest
import torch
from preference_fixtures import OPTIM, MoreA, base_model_folder, write_pairs

from minigpt.data.preferences import PreferenceDataModule
from minigpt.model.folder import load_model_folder
from minigpt.run import train
from minigpt.stages.dpo import DPOStage
from minigpt.stages.inputs import prepare_fit
from minigpt.utils.errors import ConfigError


def fit_dpo(tmp_path: Path, steps: int, **options) -> tuple[DPOStage, dict, L.Trainer]:
    folder = base_model_folder(tmp_path / "base")
    _, tokenizer = load_model_folder(folder)
    dm = PreferenceDataModule(
        path=str(write_pairs(tmp_path / "p.jsonl")), tasks={"more_a": MoreA()}, num_eval=16,
        batch_size=16, val_fraction=0.25, seed=0,
    )  # fmt: skip
    dm.attach_tokenizer(tokenizer)
    torch.manual_seed(0)
    stage = DPOStage(model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(folder),
                     num_samples=4, max_new_tokens=6, **options)  # fmt: skip
    prepare_fit(stage, dm)
    trainer = L.Trainer(
        max_steps=steps, val_check_interval=steps, check_val_every_n_epoch=None, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(stage, datamodule=dm)
    return stage, {k: float(v) for k, v in trainer.callback_metrics.items()}, trainer


# IPO pulls h towards 1/(2β) and no further, so it needs a smaller β to move as far as the others.
@pytest.mark.parametrize("loss, beta", [("sigmoid", 0.5), ("ipo", 0.05), ("hinge", 0.5), ("robust", 0.5)])
def test_dpo_raises_margin_and_gold_score(tmp_path, loss, beta):
    options = {"label_smoothing": 0.1} if loss == "robust" else {}
    stage, metrics, _ = fit_dpo(tmp_path, 40, loss=loss, beta=beta, **options)
    assert metrics["val/accuracy"] >= 0.9 and metrics["val/margin"] > 0, metrics
    assert metrics["val/gold/more_a"] > metrics["val/gold_init/more_a"] + 0.1, metrics
    assert metrics["val/kl/more_a"] > 0


def test_frozen_reference_does_not_change(tmp_path):
    stage, _, _ = fit_dpo(tmp_path, 10, precompute_ref=True)
    base, _ = load_model_folder(tmp_path / "base")
    reference = stage.reference.state_dict()
    policy = stage.model.state_dict()
    for name, value in base.state_dict().items():
        rows = value.shape[0] if name.startswith(("tok_emb", "lm_head")) else None  # grown for chat tokens
        torch.testing.assert_close(reference[name][:rows], value, rtol=0, atol=0)
    assert not any(p.requires_grad for p in stage.reference.parameters())
    assert any(not torch.equal(policy[n], reference[n]) for n in policy)  # while the policy did move


def test_precomputed_reference_logprobs_match_the_reference(tmp_path):
    stage, _, trainer = fit_dpo(tmp_path, 2, precompute_ref=True)
    batch = next(iter(trainer.datamodule.dataloader("val")))
    cached = stage.reference_logprobs(batch, "val")
    stage.ref_cache.clear()
    torch.testing.assert_close(cached, stage.reference_logprobs(batch, "val"))


def test_lora_reference_is_the_base_model(tmp_path):
    stage, metrics, trainer = fit_dpo(tmp_path, 10, lora={"r": 4, "alpha": 8, "dropout": 0.0,
                                                          "target_modules": ["qkv", "proj", "fc"]})  # fmt: skip
    assert stage.reference is None and metrics["val/margin"] > 0
    batch = next(iter(trainer.datamodule.dataloader("val")))
    base, _ = load_model_folder(tmp_path / "base")
    base.resize_vocab(stage.model.config.vocab_size)
    with torch.no_grad():  # the new chat-token rows are trained, so copy them in before comparing
        base.tok_emb.weight[:] = stage.model.tok_emb.weight
    from minigpt.stages.dpo import completion_logprobs

    with torch.no_grad():
        expected, _ = completion_logprobs(base.eval(), batch)
    torch.testing.assert_close(stage.reference_logprobs(batch, "val"), expected, atol=1e-5, rtol=0)


def test_bad_dpo_options_are_refused(tmp_path):
    folder = str(base_model_folder(tmp_path / "base"))
    with pytest.raises(ConfigError, match="stage.loss='kto'"):
        DPOStage(model_config=None, optim=OPTIM, init_from=folder, loss="kto")
    with pytest.raises(ConfigError, match="stage.beta=0"):
        DPOStage(model_config=None, optim=OPTIM, init_from=folder, beta=0)


def test_dpo_run_composes_and_trains(tmp_path, compose_train):
    folder = base_model_folder(tmp_path / "base")
    cfg = compose_train(
        "stage=dpo", f"init_from={folder}", "data=preferences", f"data.path={write_pairs(tmp_path / 'p.jsonl', 40)}",
        "data.batch_size=8", "stage.loss=ipo", "stage.precompute_ref=true", "trainer.max_steps=3",
        "trainer.val_check_interval=3", "logger=csv",
        toy_data=False,
    )  # fmt: skip
    metrics = train(cfg)
    assert {"val/loss", "val/accuracy", "val/chosen_reward", "val/rejected_reward"} <= set(metrics)
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("option", [{"train_embedding": True}, {"bias": "all"}])
def test_lora_options_that_move_the_reference_are_refused(option):  # adapters off would not undo them
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["qkv"], **option}
    with pytest.raises(ConfigError, match="lora.train_embedding"):
        DPOStage(model_config=None, optim=OPTIM, lora=lora)
