"""The shared network: `ModelConfig` and the `Transformer` (plus heads and MoE from later issues)."""

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer

__all__ = ["ModelConfig", "Transformer"]
