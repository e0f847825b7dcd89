"""Optimizers beyond `torch.optim`'s: Muon for the hidden matrices with AdamW for the rest (docs/speedrun.md)."""
