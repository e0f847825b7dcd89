"""`stage=tts` learns mel frames and durations — here on a stand-in written for the test: each character has
its own spectrum and its own length, so both can be learned exactly and a model that learns nothing cannot pass."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from minigpt.audio.features import MelConfig
from minigpt.audio.wav import read_wav
from minigpt.cli.speak import speak_to_file
from minigpt.data.speech.tts_rows import collate_tts
from minigpt.evaluation.report import evaluate_run
from minigpt.evaluation.tts import evaluate_tts
from minigpt.model.config import ModelConfig
from minigpt.run import train
from minigpt.stages.inputs import StageInputs
from minigpt.stages.tts import TTSStage
from minigpt.utils.errors import ConfigError

N_MELS, VOCAB = 8, 6
OPTIM = {"lr": 3e-3, "weight_decay": 0.0, "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True}}


def stand_in_rows(n: int, seed: int) -> list:
    """Utterances of 3–6 characters; character c lasts 1 + c % 3 frames, each frame its spectrum ± noise."""
    gen = torch.Generator().manual_seed(seed)
    spectra = torch.randn(VOCAB, N_MELS, generator=torch.Generator().manual_seed(0))
    rows = []
    for _ in range(n):
        ids = torch.randint(0, VOCAB, (int(torch.randint(3, 7, (1,), generator=gen)),), generator=gen)
        durations = 1 + ids % 3
        mel = spectra[ids].repeat_interleave(durations, dim=0) + 0.05 * torch.randn(
            int(durations.sum()), N_MELS, generator=gen
        )
        rows.append((ids, mel, durations))
    return rows


def stage(**kwargs) -> TTSStage:
    config = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=VOCAB)
    tts = {"n_mels": N_MELS, "decoder_layers": 1, "max_frames": 32, "duration_hidden": 16, "dropout": 0.0}
    return TTSStage(model_config=config, optim=OPTIM, tts=tts, **kwargs)


def test_tts_stage_learns_spectra_and_durations() -> None:
    torch.manual_seed(0)
    tts = stage()
    tts.attach_data(StageInputs(source="stand-in", mel_frames=MelConfig(n_mels=N_MELS)))
    train = DataLoader(stand_in_rows(256, 1), batch_size=16, shuffle=True, collate_fn=lambda r: collate_tts(r, 0))
    val = DataLoader(stand_in_rows(32, 2), batch_size=16, collate_fn=lambda r: collate_tts(r, 0))
    trainer = L.Trainer(
        max_steps=80,
        val_check_interval=80,
        check_val_every_n_epoch=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with torch.no_grad():
        mel, duration = (torch.stack(pair).mean() for pair in zip(*(tts._losses(batch) for batch in val)))
    trainer.fit(tts, train, val)
    after = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    # The untrained model is off by ~0.85 (unit-variance spectra); learning them leaves about the noise's
    # L1 (0.05·√(2/π) ≈ 0.04): 0.05 in this run. Durations: MSE 1.08 → 0.0015.
    assert after["val/mel_l1"] < 0.15 * mel
    assert after["val/duration_mse"] < 0.05 * duration


def test_tts_stage_refuses_data_without_mel_frames() -> None:
    tts = stage()
    with pytest.raises(ConfigError, match="data=speech/digits"):
        tts.attach_data(StageInputs(source="TextDataModule"))
    with pytest.raises(ConfigError, match="set stage.tts.n_mels=80"):
        tts.attach_data(StageInputs(source="x", mel_frames=MelConfig(n_mels=80)))
    with pytest.raises(ConfigError, match="duration_weight"):
        stage(duration_weight=-1.0)


def test_train_speak_and_evaluate_from_the_command_configs(
    compose_train, compose_command, compose_eval, tmp_path
) -> None:
    """`train.py stage=tts data=speech/digits` → `python -m minigpt.speak` → `evaluate.py eval=tts`, tiny."""
    cfg = compose_train(
        "stage=tts",
        "data=speech/digits",
        "data.num_train=40",
        "data.num_val=4",
        "data.batch_size=8",
        "data.sources.digits.max_digits=2",
        "stage.tts.decoder_layers=1",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        toy_data=False,
    )
    cfg.paths.cache_dir = str(tmp_path / "cache")
    cfg.model.n_layer, cfg.model.n_embd, cfg.model.block_size = 1, 32, 16
    metrics = train(cfg)
    assert {"val/mel_l1", "val/duration_mse"} <= set(metrics)
    run = tmp_path / "run"

    out = tmp_path / "said.wav"
    speech = speak_to_file(
        compose_command("speak", f"run={run}", 'text="4 7"', f"out={out}", f"png={tmp_path / 'said.png'}")
    )
    samples, rate = read_wav(out)
    assert rate == 16_000 and len(samples) == speech.wave.shape[0] > 0
    assert (tmp_path / "said.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="never learned to say"):
        speak_to_file(compose_command("speak", f"run={run}", "text=hello", f"out={out}"))

    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # what Hydra keeps of a real run, read by evaluate.py
    results = evaluate_run(compose_eval(f"run={run}", "eval=tts", "tts.utterances=2"))["tts"]
    assert results["utterances"] == 2 and set(results["mel_distance"]) == {"model", "vocoded", "other_voice"}
    assert results["mel_distance"]["other_voice"] > 0

    # The round trip scores every clip set with every decoder the recogniser has (here a stub that hears "x").
    datamodule = instantiate(cfg.data)
    stub = lambda clips: {"stub": ["x"] * len(clips)}
    wer = evaluate_tts(run / "model", datamodule, 2, tmp_path, stub, n_iter=2)["wer"]
    assert wer == {"stub": {"ours": 1.0, "reference": 1.0, "vocoded_reference": 1.0}}
