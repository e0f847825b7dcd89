"""Training stages: one LightningModule per stage, all sharing `minigpt.model` and `minigpt.losses`."""
