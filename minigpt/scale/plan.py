"""`python -m minigpt.scale.plan model=gpt_small gpus=8 gpu_memory=80GB`: will it fit, and with which strategy?

Prints, per GPU, the bytes of weights, gradients, optimizer state, transiently gathered weights and
activations of one training step for each strategy — data-parallel ones, pipeline stages, tensor
parallelism over the GPUs (dense models) and expert parallelism (MoE models) — and whether it fits in
`gpu_memory` (`minigpt.scale.memory` has the arithmetic and its sources). The model is built on PyTorch's meta
device, so the parameter count is the real one and a 7B model costs no memory.
"""

from __future__ import annotations

import re

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
    named = dict(model.named_parameters())  # a tied matrix once
    experts = sum(p.numel() for name, p in named.items() if ".experts." in name)
    split = sum(p.numel() for name, p in named.items() if _TENSOR_PARALLEL_SPLITS.search(name))
    embedding = sum(
        p.numel() for table in (model.tok_emb, model.pos_emb) if table is not None for p in table.parameters()
    )
    head = sum(p.numel() for p in model.norm_f.parameters()) + model.lm_head.weight.numel()
    return ModelShape(
        model.num_params(), block, config.n_layer, config.n_embd, config.n_head, model.config.vocab_size or 0,
        embedding_params=embedding, head_params=head, tensor_parallel_params=split, expert_params=experts,
    )  # fmt: skip


# What `minigpt.scale.tensor_parallel.parallelize` splits: column-parallel weights and biases, row-parallel
# weights (their bias is added once, after the all-reduce: replicated), the vocabulary matrices.
_TENSOR_PARALLEL_SPLITS = re.compile(
    r"attn\.qkv\.|attn\.proj\.weight|ffn\.(fc|gate|up)\.|ffn\.proj\.weight|tok_emb|lm_head"
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
            cfg.get("microbatches", 1),
        )
        for s in STRATEGIES
        if s.applies(shape)
        if not s.pipeline or cfg.gpus <= config.n_layer  # a pipeline stage needs at least one block
    ]
    print(
        f"{shape.params / 1e6:,.1f}M parameters; {cfg.gpus} GPUs × {memory / 1e9:g} GB; {cfg.train_precision}; "
        f"micro-batch {cfg.micro_batch} × {seq_len} tokens per GPU; "
        f"activation_checkpointing={str(config.activation_checkpointing).lower()}"
    )
    print(format_table(plans, memory))
    if cfg.gpus > config.n_layer:
        print(f"(no pipeline rows: {cfg.gpus} stages would be more than the model's {config.n_layer} blocks)")
    return plans


if __name__ == "__main__":
    main()
