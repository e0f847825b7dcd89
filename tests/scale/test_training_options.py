"""Precision group, activation checkpointing and gradient accumulation on tiny runs."""

from __future__ import annotations

from safetensors.torch import load_file

from minigpt.run import train


def test_precision_group_overrides_the_trainer_only_when_chosen(compose_train):
    assert compose_train().trainer.precision == "32-true"
    assert compose_train("trainer=gpu").trainer.precision == "bf16-mixed"  # the GPU trainer's own default
    assert compose_train("trainer=gpu", "precision=fp32").trainer.precision == "32-true"
    assert compose_train("precision=bf16_true").trainer.precision == "bf16-true"


def test_bf16_mixed_with_activation_checkpointing_learns(compose_train):
    cfg = compose_train(
        "precision=bf16_mixed",
        "model.activation_checkpointing=true",
        "optim.warmup_steps=0",
        "optim.lr=1e-2",
        "trainer.max_steps=30",
        "trainer.val_check_interval=30",
        "trainer.log_every_n_steps=1",
    )
    metrics = train(cfg)
    assert cfg.trainer.precision == "bf16-mixed"
    # An untrained model sits near ln(vocabulary) ≈ 3.4 nats on the toy play's ~30 characters.
    assert metrics["val/loss"] < 2.7


def test_gradient_accumulation_equals_the_large_batch(compose_train, tmp_path):
    # Muon's Newton–Schulz in float32: in bf16 (`auto` on CPUs with AVX-512 BF16) the micro-batches' rounding
    # differences would be rounded again to bf16's 8 bits, beyond this test's 1e-5.
    common = (
        "trainer.max_steps=5",
        "trainer.val_check_interval=5",
        "optim.warmup_steps=0",
        "optim.optimizer.ns_dtype=float32",
    )
    train(compose_train(*common, "data.batch_size=12"))
    (tmp_path / "run").rename(tmp_path / "big")
    train(compose_train(*common, "data.batch_size=6", "trainer.accumulate_grad_batches=2"))
    # Two micro-batches of 6 see the same 12 windows as one batch of 12 (sample i depends on i only),
    # and averaging two equal-sized means gives the full mean: the same updates, up to rounding.
    # (Their val/loss differs only because limit_val_batches counts batches of different sizes.)
    weights_big = load_file(tmp_path / "big" / "model" / "model.safetensors")
    weights_acc = load_file(tmp_path / "run" / "model" / "model.safetensors")
    for name, tensor in weights_big.items():
        assert (weights_acc[name] - tensor).abs().max() < 1e-5, name


def test_the_runs_activation_checkpointing_applies_to_an_init_from_model(tmp_path):
    from minigpt.model.config import ModelConfig
    from minigpt.model.folder import save_model_folder
    from minigpt.model.transformer import Transformer
    from minigpt.stages.base import Stage

    shape = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=20)
    save_model_folder(tmp_path / "parent", Transformer(ModelConfig(**shape)), None)  # saved without recompute
    run_config = ModelConfig(**shape, activation_checkpointing="mlp")
    stage = Stage(run_config, optim={"lr": 1e-3}, init_from=str(tmp_path / "parent"))
    assert stage.model.config.activation_checkpointing == "mlp"
