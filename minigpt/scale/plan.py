"""`python -m minigpt.scale.plan model=gpt_small gpus=8 gpu_memory=80GB`: will it fit, and with which strategy?

Prints, per GPU, the bytes of weights, gradients, optimizer state, transiently gathered weights and
activations of one training step for each data-parallel strategy (`minigpt.scale.memory` has the
arithmetic and its sources), and whether it fits in `gpu_memory`. The model is built on PyTorch's meta
device, so the parameter count is the real one and a 7B model costs no memory.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from minigpt.cli.command import command
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.scale.memory import ACTIVATION_BYTES, STRATEGIES, MemoryPlan, ModelShape, plan
from minigpt.utils.errors import ConfigError
from minigpt.utils.sizes import parse_bytes


def model_shape(config: ModelConfig) -> ModelShape:
    """The parameter counts of `config`'s model, counted on a model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = Transformer(config)
    block = max(sum(p.numel() for p in b.parameters()) for b in model.blocks)
    return ModelShape(
        model.num_params(), block, config.n_layer, config.n_embd, config.n_head, model.config.vocab_size or 0
    )


def format_table(plans: list[MemoryPlan], gpu_memory: float) -> str:
    """One row per strategy, in GB (10⁹ bytes), with whether the total fits in `gpu_memory`."""
    header = f"{'strategy':<17}{'weights':>9}{'grads':>9}{'optim':>9}{'gathered':>10}{'activ.':>9}{'total':>9}  fits"
    rows = [header]
    for p in plans:
        numbers = (p.params, p.grads, p.optimizer, p.gathered, p.activations, p.total)
        widths = (9, 9, 9, 10, 9, 9)
        cells = "".join(f"{n / 1e9:>{w}.2f}" for n, w in zip(numbers, widths))
        rows.append(f"{p.strategy:<17}{cells}  {'yes' if p.total <= gpu_memory else 'no'}")
    return "\n".join(rows)


@command("plan")
def main(cfg: DictConfig) -> list[MemoryPlan]:
    """Print the memory plan of every strategy for the configured model and GPUs; returns the plans."""
    if cfg.train_precision not in ACTIVATION_BYTES:
        raise ConfigError(
            f"train_precision={cfg.train_precision} is unknown; use one of {', '.join(ACTIVATION_BYTES)}."
        )
    if not isinstance(cfg.gpus, int) or cfg.gpus < 1:
        raise ConfigError(f"gpus={cfg.gpus} must be a positive integer.")
    fields = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(fields, dict)
    fields["vocab_size"] = fields.get("vocab_size") or cfg.vocab_size
    config = ModelConfig.from_dict(fields)
    shape, memory = model_shape(config), parse_bytes(cfg.gpu_memory, "gpu_memory")
    seq_len = cfg.seq_len or config.block_size
    plans = [
        plan(
            shape,
            s,
            cfg.gpus,
            cfg.train_precision,
            cfg.micro_batch,
            seq_len,
            config.activation_checkpointing,
            cfg.flash_attention,
        )
        for s in STRATEGIES
    ]
    print(
        f"{shape.params / 1e6:,.1f}M parameters; {cfg.gpus} GPUs × {memory / 1e9:g} GB; {cfg.train_precision}; "
        f"micro-batch {cfg.micro_batch} × {seq_len} tokens per GPU; "
        f"activation_checkpointing={str(config.activation_checkpointing).lower()}"
    )
    print(format_table(plans, memory))
    return plans


if __name__ == "__main__":
    main()
