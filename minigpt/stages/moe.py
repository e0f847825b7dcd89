"""`stage=moe`: sparse upcycling — turn a dense model into a mixture of experts and keep pretraining."""

from __future__ import annotations

import logging

from minigpt.model.config import ModelConfig
from minigpt.model.moe_surgery import upcycle
from minigpt.model.transformer import Transformer
from minigpt.stages.base import Stage
from minigpt.stages.lm_steps import NextTokenSteps
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError

log = logging.getLogger(__name__)


class UpcycleStage(NextTokenSteps, Stage):
    """Sparse upcycling (Komatsuzaki et al. 2022): a dense parent's MLPs become experts, then pretraining
    continues on the same LM objective (plus the routers' balancing and z-losses).

    The trunk — shape, attention, embeddings, expert width — is the parent's (`init_from`); `model.moe`
    (e.g. `model=moe_8x`) gives the number of experts, the router and the loss coefficients. Trade-off:
    the experts start where a long dense run ended, so the MoE beats a fresh one quickly, but a token
    now runs k full-width MLPs, k× the dense FFN compute.
    """

    def build_model(self, model_config: ModelConfig, init_from: str | None) -> tuple[Transformer, Tokenizer | None]:
        """The dense `init_from` model with its MLPs upcycled to the experts `model_config.moe` describes."""
        if not init_from:
            raise ConfigError(
                "stage=moe upcycles a dense model: set init_from=outputs/<dense run>/model "
                "(or use stage=pretrain model=moe_8x to train an MoE from scratch)."
            )
        if model_config.moe is None:
            raise ConfigError(
                "stage=moe needs the experts to create, but model.moe is null; add model=moe_8x "
                "(its trunk is ignored: the dense parent's is used) or +model.moe.num_experts=8."
            )
        dense, tokenizer = super().build_model(model_config, init_from)
        model = upcycle(dense, model_config.moe)
        moe = model.config.moe
        assert moe is not None  # upcycle made it
        log.info(
            "Upcycled %s: %d experts of width %d (router %s, top_k %d) every %d layer(s).",
            init_from, moe.num_experts, model.config.mlp_hidden, moe.router, moe.top_k, moe.every_n_layers,
        )  # fmt: skip
        return model, tokenizer
