"""Generate text from a trained model.

    python -m minigpt.cli.generate run=outputs/train/<run> prompt="ROMEO:" sampling.max_new_tokens=200 \\
        sampling.temperature=0.8 sampling.top_p=0.9
    python -m minigpt.cli.generate run=... sampling.strategy=beam sampling.num_beams=4 num_return_sequences=2
    python -m minigpt.cli.generate run=<stage=multimodal run> image=digit.png prompt="<image> a handwritten"

Options are the keys of `conf/generate.yaml` and, under `sampling.`, of `conf/sampling/default.yaml`.
A single sampled sequence is streamed as it is generated.
"""

from __future__ import annotations

import time

import torch
from omegaconf import DictConfig
from rich.console import Console

from minigpt.cli.command import command
from minigpt.cli.sampling import generation_config
from minigpt.inference.generate import Generation, generate
from minigpt.inference.stream import TextStream
from minigpt.model.folder import load_model_and_tokenizer


def generate_text(cfg: DictConfig, console: Console | None = None) -> Generation:
    """Continue `cfg.prompt` with the model in `cfg.run` and print the text; returns the `Generation`."""
    console = console or Console()
    model, tokenizer = load_model_and_tokenizer(cfg.run, map_location=cfg.device)
    config = generation_config(cfg.sampling, tokenizer, num_return_sequences=cfg.num_return_sequences)
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
    console.print(f"[dim]{n} tokens in {seconds:.2f} s ({n / seconds:.0f} tokens/s), {out.finish_reasons}[/dim]")
    return out


def generate_about_images(cfg: DictConfig, console: Console | None = None) -> str:
    """`image=`: the greedy continuation of `cfg.prompt` by a vision-language model that sees the images."""
    from minigpt.cli.vision_chat import continue_with_images
    from minigpt.model.vision import load_vision_language_model

    model, tokenizer = load_vision_language_model(cfg.run, map_location=cfg.device, field="run")
    paths = [cfg.image] if isinstance(cfg.image, str) else [str(p) for p in cfg.image]
    prompt = str(cfg.prompt).replace("\\n", "\n")
    text = continue_with_images(model, tokenizer, prompt, paths, cfg.sampling.max_new_tokens)
    (console or Console()).print(prompt + text, markup=False, highlight=False)
    return text


@command("generate")
def main(cfg: DictConfig) -> Generation | str:
    """`python -m minigpt.cli.generate`: see the module docstring."""
    if cfg.get("image"):
        return generate_about_images(cfg)
    return generate_text(cfg)


if __name__ == "__main__":
    main()
