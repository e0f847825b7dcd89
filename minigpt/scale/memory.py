"""Memory per GPU of one training step, by strategy and precision: the arithmetic behind `minigpt.scale.plan`.

Model states (Rajbhandari et al. 2020, ZeRO §3.1): with Ψ parameters, mixed-precision Adam keeps 2Ψ
bytes of 16-bit weights, 2Ψ of 16-bit gradients and KΨ of optimizer state (K = 12: fp32 master weights,
momentum and variance) — 16Ψ in all. ZeRO shards them over N_d data-parallel GPUs (§5, Figure 1):

    DDP     (2 + 2 + K)·Ψ            ZeRO-2 (P_os+g)    2Ψ + (2 + K)·Ψ/N_d
    ZeRO-1  (P_os)  4Ψ + K·Ψ/N_d     ZeRO-3 (P_os+g+p)  (2 + 2 + K)·Ψ/N_d

That byte layout is DeepSpeed's. PyTorch autocast (Lightning's `bf16-mixed`, used by `ddp` and `fsdp`)
keeps fp32 weights and gradients and casts on the fly: 4 + 4 + 8 bytes, the same 16Ψ split differently.

Activations (Korthikanti et al. 2022, §4.1, eq. 2): a GPT block stores s·b·h·(34 + 5·a·s/h) bytes in
16-bit training (sequence s, micro-batch b, width h, a heads), of which 5·a·s²·b are the attention
scores that a fused (flash) attention kernel never stores. Checkpointing a block keeps 2·s·b·h.

Model parallelism splits a part of the parameters instead of all model states (`Strategy.splits`):

    tensor parallel over t GPUs   (Ψ − Ψ_tp + Ψ_tp/t)·(2 + 2 + K)   Ψ_tp: block matrices and vocabulary
    expert parallel over R GPUs   (Ψ − Ψ_e + Ψ_e/R)·(2 + 2 + K)     Ψ_e: the experts of every MoE layer

and tensor parallelism divides 24 of the 34 s·b·h of a block's activations and the attention scores by t
(Korthikanti et al. 2022, eq. 3: s·b·h·(10 + 24/t + 5·a·s/(h·t))), and the vocabulary-sharded logits too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Bytes per parameter of (weights, gradients, optimizer state) for Adam, by precision.
AUTOCAST_BYTES = {
    "fp32": (4, 4, 8),
    "bf16_mixed": (4, 4, 8),  # fp32 weights, autocast to bf16 inside the matmuls
    "fp16_mixed": (4, 4, 8),
    "bf16_true": (2, 2, 4),  # everything in bf16, no fp32 copy
}
MASTER_COPY_BYTES = {  # DeepSpeed: 16-bit weights and gradients, fp32 master weights + Adam moments (K = 12)
    "fp32": (4, 4, 8),
    "bf16_mixed": (2, 2, 12),
    "fp16_mixed": (2, 2, 12),
    "bf16_true": (2, 2, 4),
}
# Bytes per activation value: 16-bit unless the whole step runs in fp32.
ACTIVATION_BYTES = {"fp32": 4, "bf16_mixed": 2, "fp16_mixed": 2, "bf16_true": 2}

# Korthikanti et al. 2022, eq. 2, per block in units of s·b·h (16-bit values; dropout masks one byte):
# attention 11 (QKV input, Q/K/V, softmax output, projection input, dropout mask), MLP 19, two norms 4.
_ATTENTION_SBH, _MLP_SBH, _NORM_SBH = 11, 19, 2  # _NORM_SBH: one norm
_BLOCK_SBH = _ATTENTION_SBH + _MLP_SBH + 2 * _NORM_SBH  # 34
# What one block keeps for backward, by `model.activation_checkpointing` (2 = the block's input).
_KEPT_SBH = {
    False: _BLOCK_SBH,
    "attention": 2 + _MLP_SBH + _NORM_SBH,  # input kept; norm + attention recomputed
    "mlp": 2 + _ATTENTION_SBH + _NORM_SBH,  # attention kept; norm + MLP recomputed
    True: 2,
}
# Of those, what tensor parallelism splits over its t ranks (Korthikanti et al. 2022, eq. 3: 24 of 34): in
# attention Q/K/V, scores, the input of the output projection (8 of 11); in the MLP its hidden units (16 of 19).
# The block's input, the norms, the inputs of the first linear layers and the dropout masks stay whole.
_SPLIT_SBH = {False: 24, "attention": 16, "mlp": 8, True: 0}


@dataclass(frozen=True)
class Strategy:
    """How a strategy stores model states on each of `gpus` GPUs.

    `sharded` names what is split 1/N: "" (DDP), "os" (ZeRO-1), "os+g" (ZeRO-2), "os+g+p" (ZeRO-3).
    `gathers` is the transient full copy of weights a sharded strategy assembles during the step:
    "block" (ZeRO-3 / FSDP gathers one block at a time), "model" (FSDP2 with zero=2 keeps every gathered
    block from forward to backward), or "" (none).
    """

    name: str
    sharded: str
    master_copy: bool  # DeepSpeed's 16-bit weights + fp32 master layout, else autocast's
    gathers: str = ""
    pipeline: str = ""  # strategy=pipeline's schedule ("gpipe" | "1f1b"): the GPUs are stages, not replicas
    splits: str = ""  # model parallelism: "tensor" (Ψ_tp split over the GPUs) or "experts" (Ψ_e split)

    def applies(self, shape: ModelShape) -> bool:
        """Whether the strategy can train `shape`'s model: expert parallelism needs experts, tensor
        parallelism splits dense MLPs only."""
        if self.splits == "experts":
            return shape.expert_params > 0
        return not (self.splits == "tensor" and shape.expert_params)


STRATEGIES = (
    Strategy("ddp", "", master_copy=False),
    Strategy("fsdp zero=1", "os", master_copy=False),
    # FSDP2 stores 1/N of the weights between steps but holds them all from forward to backward.
    Strategy("fsdp zero=2", "os+g+p", master_copy=False, gathers="model"),
    Strategy("fsdp zero=3", "os+g+p", master_copy=False, gathers="block"),
    Strategy("deepspeed_zero2", "os+g", master_copy=True),
    Strategy("deepspeed_zero3", "os+g+p", master_copy=True, gathers="block"),
    Strategy("tensor_parallel", "", master_copy=False, splits="tensor"),
    Strategy("expert_parallel", "", master_copy=False, splits="experts"),
    Strategy("pipeline gpipe", "", master_copy=False, pipeline="gpipe"),
    Strategy("pipeline 1f1b", "", master_copy=False, pipeline="1f1b"),
)


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a model depends on: parameters (all, and of the largest block), depth, width, heads,
    vocabulary."""

    params: int
    block_params: int
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    tensor_parallel_params: int = 0  # Ψ_tp: what tensor parallelism splits (`minigpt.scale.tensor_parallel`)
    expert_params: int = 0  # Ψ_e: the experts of all MoE layers
    embedding_params: int = 0  # token (+ position) tables: the first pipeline stage's besides its blocks
    head_params: int = 0  # final norm + output matrix (a tied one copied): the last stage's besides its blocks


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU of one training step, by kind."""

    strategy: str
    params: float
    grads: float
    optimizer: float
    gathered: float
    activations: float

    @property
    def total(self) -> float:
        """Peak estimate: model states, transient gathered weights and activations together."""
        return self.params + self.grads + self.optimizer + self.gathered + self.activations


def model_states(psi: float, layout: tuple[int, int, int], sharded: str, gpus: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) bytes per GPU for Ψ=`psi` parameters (ZeRO §5, Figure 1)."""
    p, g, o = layout
    return (
        p * psi / (gpus if "p" in sharded.split("+") else 1),
        g * psi / (gpus if "g" in sharded.split("+") else 1),
        o * psi / (gpus if "os" in sharded.split("+") else 1),
    )


def activation_bytes(
    shape: ModelShape,
    micro_batch: int,
    seq_len: int,
    precision: str,
    recompute: bool | str,
    flash: bool,
    tensor_parallel: int = 1,
) -> float:
    """Activations kept for backward per GPU (Korthikanti et al. 2022, eq. 2), plus the fp32 logits and
    their gradient (2·4·s·b·V, the cross-entropy's input). With whole-block recomputation one block's
    activations are rebuilt at a time during backward, so one full block is added back. Tensor parallelism
    over `tensor_parallel` GPUs divides the split share (eq. 3), the scores and the logits."""
    sbh = seq_len * micro_batch * shape.n_embd
    t = tensor_parallel
    scores = 0 if flash else 5 * shape.n_head * seq_len**2 * micro_batch / t  # one byte each for the mask
    kept_scores = 0 if recompute in (True, "attention") else scores
    width = ACTIVATION_BYTES[precision] / 2  # eq. 2 counts 16-bit values
    kept_sbh = _KEPT_SBH[recompute] - _SPLIT_SBH[recompute] * (1 - 1 / t)
    per_block = (kept_sbh * sbh + kept_scores) * width
    block_sbh = _BLOCK_SBH - _SPLIT_SBH[False] * (1 - 1 / t)
    rebuilt = (block_sbh * sbh + scores) * width if recompute is True else 0
    logits = 2 * 4 * seq_len * micro_batch * shape.vocab_size / t
    return shape.n_layer * per_block + rebuilt + logits


def plan(
    shape: ModelShape,
    strategy: Strategy,
    gpus: int,
    precision: str,
    micro_batch: int,
    seq_len: int,
    recompute: bool | str = False,
    flash: bool = True,
    microbatches: int = 1,
) -> MemoryPlan:
    """The memory of one training step per GPU under `strategy` on `gpus` data-parallel GPUs (pipeline
    stages for a pipeline strategy, each batch cut into `microbatches` of `micro_batch` sequences)."""
    layout = (MASTER_COPY_BYTES if strategy.master_copy else AUTOCAST_BYTES)[precision]
    if strategy.pipeline:
        return pipeline_plan(
            shape, strategy, gpus, layout, precision, micro_batch, seq_len, recompute, flash, microbatches
        )
    split = {"tensor": shape.tensor_parallel_params, "experts": shape.expert_params}.get(strategy.splits, 0)
    psi = shape.params - split + split / gpus  # model parallelism: each GPU keeps 1/N of the split part
    params, grads, optimizer = model_states(psi, layout, strategy.sharded, gpus)
    if strategy.gathers == "model":  # full weights from forward to backward: all but the stored shard
        gathered = layout[0] * shape.params * (1 - 1 / gpus)
    elif strategy.gathers == "block":  # one block's weights and gradients in full at a time
        gathered = (layout[0] + layout[1]) * shape.block_params
    else:
        gathered = 0.0
    degree = gpus if strategy.splits == "tensor" else 1
    activations = activation_bytes(shape, micro_batch, seq_len, precision, recompute, flash, degree)
    return MemoryPlan(strategy.name, params, grads, optimizer, gathered, activations)


def pipeline_plan(
    shape: ModelShape,
    strategy: Strategy,
    stages: int,
    layout: tuple[int, int, int],
    precision: str,
    micro_batch: int,
    seq_len: int,
    recompute: bool | str,
    flash: bool,
    microbatches: int,
) -> MemoryPlan:
    """The busiest of `stages` pipeline stages (`minigpt.scale.pipeline`): the first holds ⌈L/P⌉ blocks and
    the embeddings, the last ⌊L/P⌋ blocks, the final norm and the head; nothing is sharded.

    Activations are kept per microbatch in flight, from its forward to its backward: GPipe (Huang et al.
    2019) runs all M forwards first, so every stage holds M; 1F1B (Narayanan et al. 2019) lets stage s hold
    at most P − s, so the first holds min(P, M) and the last 1 (it runs each backward right after its
    forward). The last stage's activations include its microbatches' logits.
    """
    blocks = [-(-shape.n_layer // stages), shape.n_layer // stages]  # ⌈L/P⌉ on the first, ⌊L/P⌋ on the last
    in_flight = [microbatches] * 2 if strategy.pipeline == "gpipe" else [min(stages, microbatches), 1]
    if stages == 1:  # one stage holds everything
        weights, in_flight = [shape.params], in_flight[:1]
    else:
        weights = [
            blocks[0] * shape.block_params + shape.embedding_params,
            blocks[1] * shape.block_params + shape.head_params,
        ]
    plans = []
    for i, (params, held) in enumerate(zip(weights, in_flight)):
        last = i == len(weights) - 1
        kept = replace(
            shape, n_layer=blocks[i] if stages > 1 else shape.n_layer, vocab_size=shape.vocab_size if last else 0
        )
        activations = held * activation_bytes(kept, micro_batch, seq_len, precision, recompute, flash)
        p, g, o = model_states(params, layout, "", 1)
        plans.append(MemoryPlan(strategy.name, p, g, o, 0.0, activations))
    return max(plans, key=lambda plan: plan.total)
