"""The default config composes and a tiny run trains end to end."""

from minigpt.run import train


def test_tiny_run_writes_model_folder(compose_train, tmp_path):
    cfg = compose_train("trainer.max_steps=5", "trainer.val_check_interval=5")
    metrics = train(cfg)
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    assert metrics["val/loss"] > 0
