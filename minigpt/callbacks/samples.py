"""Print (and log) a few generated samples at every validation, so progress can be *read*."""

from __future__ import annotations

import lightning as L
import torch
from rich.console import Console
from rich.panel import Panel

from minigpt.inference.generate import GenerationConfig, generate


class SampleGeneration(L.Callback):
    """At the end of each validation, sample `num_samples` continuations of `prompt` and show them.

    Text goes to the console (rich panel), to `samples.txt` in the run folder, and to loggers that take
    text (TensorBoard `add_text`, W&B tables through `log_text`).
    """

    def __init__(
        self,
        prompt: str = "\n",
        num_samples: int = 2,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = 50,
        seed: int = 0,
    ) -> None:
        self.prompt, self.num_samples, self.max_new_tokens = prompt, num_samples, max_new_tokens
        self.temperature, self.top_k, self.seed = temperature, top_k, seed
        self.last_samples: list[str] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Generate and report."""
        tokenizer = getattr(pl_module, "tokenizer", None)
        if tokenizer is None or trainer.sanity_checking or not trainer.is_global_zero or self.num_samples <= 0:
            return
        if trainer.fast_dev_run:  # a rehearsal of the loop: it writes nothing into the run folder
            return
        ids = tokenizer.encode(self.prompt, allow_special=True) or [tokenizer.eos_id or 0]
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            num_return_sequences=self.num_samples,
        )
        out = generate(pl_module.model, [ids], config, generator=generator)  # eval mode inside, then restored
        # skip_special: padding and bos/eos markers are not text (a `<|pad|>` in a sample only confuses)
        self.last_samples = [tokenizer.decode(ids + row, skip_special=True) for row in out.token_lists()]
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
