"""Generate text from a trained model.

    python -m minigpt.generate run=outputs/train/<run> prompt="ROMEO:" sampling.max_new_tokens=200 \\
        sampling.strategy=sample sampling.temperature=0.8 sampling.top_p=0.9
    python -m minigpt.generate run=... sampling.strategy=beam sampling.num_beams=4 sampling.length_penalty=1.0

Options are the keys of `conf/generate.yaml`, the decoding ones under `sampling` (conf/sampling/default.yaml).
A single sampled sequence is streamed as it is generated.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import torch
from rich.console import Console

from minigpt.inference.cli import compose_cli, generation_config
from minigpt.inference.generate import Generation, generate
from minigpt.inference.stream import TextStream
from minigpt.model.folder import load_model_folder
from minigpt.utils.errors import ConfigError


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> Generation:
    """Parse `key=value` options, generate, print; returns the `Generation`."""
    cfg = compose_cli("generate", sys.argv[1:] if argv is None else argv)
    console = console or Console()
    model, tokenizer = load_model_folder(cfg.run, map_location=cfg.device)
    if tokenizer is None:
        raise ConfigError(f"run={cfg.run} has no tokenizer.json next to the model; it cannot read a prompt.")
    config = generation_config(cfg, tokenizer)
    prompt = str(cfg.prompt).replace("\\n", "\n")
    ids = tokenizer.encode(prompt, allow_special=True) or [tokenizer.bos_id or 0]
    generator = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    streaming = cfg.stream and config.strategy != "beam" and config.num_return_sequences == 1
    stream = TextStream(tokenizer)
    if streaming:
        console.print(prompt, style="dim", end="", markup=False, highlight=False)

    def show(rows: torch.Tensor, next_ids: torch.Tensor) -> None:
        console.print(stream.push(next_ids.tolist()), end="", markup=False, highlight=False)

    start = time.perf_counter()
    out = generate(
        model,
        [ids],
        config,
        pad_id=tokenizer.pad_id or 0,
        tokenizer=tokenizer,
        generator=generator,
        on_token=show if streaming else None,
    )
    seconds = time.perf_counter() - start
    if streaming:
        console.print(stream.flush(), markup=False, highlight=False)
    else:
        for i, row in enumerate(out.token_lists()):
            score = f" score {out.scores[i]:.3f}" if out.scores is not None else ""
            console.rule(f"sequence {i} ({out.finish_reasons[i]}){score}")
            console.print(tokenizer.decode(ids + row), markup=False, highlight=False)
    n = int(out.lengths.sum())
    console.print(
        f"[dim]{n} tokens in {seconds:.2f} s ({n / seconds:.0f} tokens/s), {out.finish_reasons}[/dim]"
    )
    return out


if __name__ == "__main__":
    main()
