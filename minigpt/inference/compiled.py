"""A compiled decoding step: the whole one-token forward pass as one C++ function (`GenerationConfig.compile`).

A small model decoding one token at a time is bound by per-call overhead, not arithmetic: eager PyTorch
pays 1.5–3 µs of Python and dispatch for every op and module call, ~25 of them per layer, while the
nano model's matrix products take a few µs each. `torch.compile` with inductor's C++ wrapper
(`cpp_wrapper`) turns the step into one compiled C++ function that fuses the element-wise work and calls
the matrix-product kernels directly, with no Python in between. The step's cache attends through the
written-out attention (`written_out_attention`) instead of the attention kernel, whose setup per (row,
head) cost more than its arithmetic; inductor fuses it with the cache write into one loop nest. On nano models
this made greedy decoding 1.5–3× faster than the eager engine (benchmarks/README.md). Compiling takes
20–120 s per model on a 2-core CPU, so it pays off for long or repeated generation (RL rollouts), not
for one short reply.

The same model code runs as in eager decoding (`Transformer.hidden_states_at`, the range check of the
positions being the decoder's job); only the cache object it is handed differs (`_SlotWriter`, which
takes the write position as an argument instead of reading the decoder's Python state, and attends
with the written-out backend). The graph is compiled with dynamic sizes, so neither the growing number
of filled cache slots nor the batch size recompiles it, except for a few kinds of step that each get a
graph of their own: one row (dynamo specialises sizes of 1), and beams reading a shared prefix
(`shared_prefix_attention`), for one prompt or several. The first step of each kind pauses once to
compile (8–30 s here). Dynamo keeps at most `torch._dynamo.config.recompile_limit` (8) graphs per
model; beyond that steps run eagerly, with the same results.
"""

from __future__ import annotations

import functools
import itertools
import types
import weakref
from collections.abc import Callable

import torch
from torch import Tensor

from minigpt.inference.kv_cache import AttentionBackend, write_slots
from minigpt.inference.one_token_attention import written_out_attention
from minigpt.inference.shared_prefix import with_shared_prefix
from minigpt.model.transformer import Transformer

# (ids (B, 1), positions (B, 1), key mask (B, 1, 1, S) or None, filled slots, keys, values,
#  the decoder's shared prefix (group, slots) or None) → logits (B, V)
DecodeStep = Callable[[Tensor, Tensor, Tensor | None, int, list[Tensor], list[Tensor], tuple[int, int] | None], Tensor]

# One compiled step per model object, kept while the model lives: later `generate` calls reuse it as long
# as the model's signature (`_model_signature`) is the one it was compiled for.
_compiled_steps: weakref.WeakKeyDictionary[Transformer, tuple[tuple, DecodeStep]] = weakref.WeakKeyDictionary()


class _SlotWriter:
    """The KV cache as the compiled step sees it: the decoder's buffers, written at slot `length`.

    `attend` writes the new token's keys and values at `length` and attends over slots 0 … `length`
    with `attention`. The compiled graph treats `length` as a symbolic size, so one graph serves every step.
    """

    def __init__(self, keys: list[Tensor], values: list[Tensor], length: int, attention: AttentionBackend) -> None:
        self.keys, self.values, self.length, self.attention = keys, values, length, attention

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        """Store `k`, `v` (B, n_kv_head, 1, hd) at slot `length`; attend `q` over slots 0 … length."""
        keys, values = write_slots(self.keys[layer], self.values[layer], self.length, k, v)
        return self.attention(q, keys, values, attn_mask)


def _decode_step(
    model: Transformer,
    ids: Tensor,
    positions: Tensor,
    key_mask: Tensor | None,
    length: int,
    keys: list[Tensor],
    values: list[Tensor],
    shared_prefix: tuple[int, int] | None,
) -> Tensor:
    """One token per row through `model` with the cache buffers `keys`/`values`: next-token logits (B, V).

    `shared_prefix` is passed as data, (group, slots) or None, and the backend built from it here: dynamo
    then treats its numbers as sizes of the graph rather than guarding on a backend object's identity.
    """
    cache = _SlotWriter(keys, values, length, with_shared_prefix(shared_prefix, written_out_attention))
    hidden, _ = model.hidden_states_at(ids, positions, key_mask, cache)
    return model.lm_head(hidden[:, -1])


def compiled_decode_step(model: Transformer) -> DecodeStep:
    """The compiled decoding step of `model` (compiled on its first calls; reused afterwards).

    The weights are inputs of the compiled function, not constants folded into it, so a model that
    trains between calls (PPO) is always decoded with its current weights.

    Before every call of a compiled function, dynamo checks ("guards") that what the graph assumed still
    holds: for a model, some 300 checks of its modules and their attributes, 0.2–0.4 ms per decoding step
    here, a third of a one-row nano step. Those checks are switched off (`guard_filter_fn`), and the same
    assumptions are checked once per call of this function instead (`_model_signature`: every module
    and parameter, the config, train/eval); a model that changed gets a newly compiled step. The inputs
    (token ids, masks, cache buffers) are still guarded at every step.
    """
    signature = _model_signature(model)
    known = _compiled_steps.get(model)
    if known is not None and known[0] == signature:
        return known[1]
    own = _own_copy(functools.partial(_decode_step, model))
    options: dict[str, str | int | bool | Callable[..., object]] = {
        "cpp_wrapper": True,
        "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe,
    }
    step = torch.compile(own, options=options, dynamic=True)
    _compiled_steps[model] = (signature, step)
    return step


def _model_signature(model: Transformer) -> tuple:
    """Everything about `model` that a compiled step bakes in, other than parameter values.

    Which module and parameter objects it holds (replaced ones, e.g. a grown vocabulary or adapters,
    change it), their shapes, dtypes, devices and `requires_grad`, the config and train/eval mode.
    """
    tensors = tuple(
        (name, id(tensor), tensor.shape, tensor.dtype, tensor.device, tensor.requires_grad)
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
    )
    modules = tuple((name, id(module), module.training) for name, module in model.named_modules())
    return repr(model.config), modules, tensors


def _own_copy(step: Callable[..., Tensor]) -> DecodeStep:
    """A plain function calling `step`, with a code object of its own.

    Dynamo keeps at most `recompile_limit` (8) compiled variants per code object; each model has a few
    (one row or several, with or without a shared prefix). Compiled as they are, a `functools.partial`
    (or a closure) would share one code object, so models compiled in one process would share, and soon
    exhaust, one budget, after which steps silently run eagerly.
    """

    def call(*args: object) -> Tensor:
        return step(*args)

    code = call.__code__.replace()  # a copy: a new code object, the same bytecode
    return types.FunctionType(code, call.__globals__, f"decode_step_{id(step):x}", None, call.__closure__)
