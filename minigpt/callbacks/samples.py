"""Print (and log) a few generated samples at every validation, so progress can be *read*."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from rich.console import Console
from rich.panel import Panel

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.scale.sharding import gather_full_model, is_sharded
from minigpt.scale.tensor_parallel import generates_collectively


class SampleGeneration(L.Callback):
    """At the end of each validation, sample `num_samples` continuations of `prompt` and show them.

    Text goes to the console (rich panel), to `samples.txt` in the run folder, and to loggers that take
    text (TensorBoard `add_text`, W&B tables through `log_text`).
    """

    def __init__(
        self,
        prompt: str = "\n",
        num_samples: int = 2,
        sampling: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        """`sampling`: `GenerationConfig` options (the run's `sampling` node); checked here, before training."""
        self.prompt, self.num_samples, self.seed = prompt, num_samples, seed
        # num_samples=0 switches the callback off; the config still wants one sequence to be valid.
        self.config = GenerationConfig(**dict(sampling or {}), num_return_sequences=max(num_samples, 1))
        self.last_samples: list[str] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Generate and report."""
        tokenizer = getattr(pl_module, "tokenizer", None)
        if tokenizer is None or trainer.sanity_checking or self.num_samples <= 0:
            return
        if not getattr(pl_module, "writes_text", True):  # a text-to-speech model has no text to show
            return
        if trainer.fast_dev_run:  # a rehearsal of the loop: it writes nothing into the run folder
            return
        if callable(getattr(pl_module, "sample_texts", None)):  # a stage that shows its own samples
            if not trainer.is_global_zero:  # (stage=multimodal: answers about validation images)
                return
            self.last_samples = pl_module.sample_texts(self.num_samples)  # type: ignore[operator]
            self.report(trainer)
            return
        # A tensor-parallel model's forward is a collective: every rank generates (the same tokens, from
        # the same seed), rank 0 reports. An FSDP-sharded model's weights (also tensor parallel + FSDP2) are
        # spread over the ranks: every rank helps gather a plain copy, rank 0 samples from it. A replicated
        # model samples on rank 0 alone.
        model = pl_module.model
        collective = generates_collectively(pl_module)
        if is_sharded(model) and not collective:
            model = gather_full_model(model)
            if model is None:
                return
            model = model.to(pl_module.device)
        elif not trainer.is_global_zero and not collective:
            return
        ids = tokenizer.encode(self.prompt, allow_special=True) or [tokenizer.eos_id or 0]
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        # eval mode inside, then restored; the tokenizer serves sampling.stop_strings
        out = generate(model, [ids], self.config, generator=generator, tokenizer=tokenizer)
        self.last_samples = [tokenizer.decode(ids + row, skip_special=True) for row in out.token_lists()]
        if trainer.is_global_zero:
            self.report(trainer)

    def report(self, trainer: L.Trainer) -> None:
        """Show `last_samples` on the console, append them to `samples.txt`, and log them as text."""
        step = trainer.global_step
        console = Console()  # made here, not kept: it holds a lock, and ddp_spawn pickles the callbacks
        for i, text in enumerate(self.last_samples):
            console.print(Panel(text, title=f"sample {i} @ step {step}", expand=False))
        if trainer.default_root_dir:
            with open(f"{trainer.default_root_dir}/samples.txt", "a", encoding="utf-8") as f:
                for text in self.last_samples:
                    f.write(f"=== step {step}\n{text}\n")
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_text"):
                experiment.add_text("samples", "\n\n---\n\n".join(self.last_samples), step)
            elif hasattr(logger, "log_text"):
                logger.log_text(key="samples", columns=["step", "text"], data=[[step, t] for t in self.last_samples])
