"""Chat with a trained model in the terminal.

    python -m minigpt.cli.chat run=outputs/train/<run> [system="You are terse."] [sampling.temperature=0.7]
    python -m minigpt.cli.chat run=<stage=multimodal run> image=picture.png   # talk about an image
    python -m minigpt.cli.chat run=<run> safety=filter [filter=<filter_train out>/model]   # docs/safety.md

Commands: `/reset` forgets the conversation, `/system <text>` sets the system message (and resets),
`/quit` (or Ctrl-D) leaves. Answers stream token by token. Models whose tokenizer has no chat tokens
(pretrained only) get plain continuation: what you type is continued as text. With `safety=filter` the
prompt and the answer pass the constitution's judges and the learned filter (`SafetyFilter`); the answer
is then shown whole, after the check, with the principle that fired when it is blocked or rewritten.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig
from rich.console import Console

from minigpt.alignment.safety_filter import SafetyFilter, safety_filter_from_config
from minigpt.cli.command import command
from minigpt.cli.sampling import generation_config
from minigpt.inference.chat import ChatSession
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.utils.errors import ConfigError

HELP = "commands: /reset, /system <text>, /quit"


def repl(
    session: ChatSession,
    read: Callable[[str], str],
    console: Console,
    generator: torch.Generator | None = None,
    guard: SafetyFilter | None = None,
) -> None:
    """Read lines until /quit or end of input; answer each, streaming the answer to `console` (or, with a
    `guard`, checking the prompt and the whole answer first)."""
    mode = "chat template" if session.templated else "plain continuation (no chat tokens)"
    console.print(f"[dim]{mode}; {HELP}[/dim]")
    while True:
        try:
            line = read("[bold green]you>[/bold green] ")
        except (EOFError, KeyboardInterrupt):
            break
        command, _, rest = line.strip().partition(" ")
        if command == "/quit":
            break
        if command == "/reset":
            session.reset()
            console.print("[dim]conversation cleared[/dim]")
        elif command == "/system":
            session.set_system(rest.strip())
            console.print(f"[dim]system message {'set' if rest.strip() else 'removed'}; conversation cleared[/dim]")
        elif command.startswith("/"):
            console.print(f"[dim]unknown command {command}; {HELP}[/dim]")
        elif line.strip() and guard is not None:
            guarded_reply(session, guard, line, console, generator)
        elif line.strip():
            console.print("[bold blue]bot>[/bold blue] ", end="")
            session.reply(
                line,
                on_text=lambda text: console.print(text, end="", markup=False, highlight=False),
                generator=generator,
            )
            console.print()


def guarded_reply(
    session: ChatSession, guard: SafetyFilter, line: str, console: Console, generator: torch.Generator | None
) -> None:
    """Answer `line` through the filter: a blocked prompt is never sent; the shown answer is what history keeps."""
    decision, where = guard.check_input(line), "prompt"
    if decision.action == "allow":
        decision, where = guard.check_output(line, session.reply(line, generator=generator)), "reply"
        if session.templated:  # the conversation remembers what the user saw, not the unfiltered answer
            session.messages[-1]["content"] = decision.text
    console.print("[bold blue]bot>[/bold blue] " + decision.text, markup=False, highlight=False)
    if decision.action != "allow":
        console.print(f"[dim]filter: {where} {decision.report()}[/dim]")


@command("chat")
def main(cfg: DictConfig) -> None:
    """Load the model in `cfg.run` and start the REPL."""
    console = Console()
    if cfg.get("image"):  # a vision-language model, greedy answers about the image (docs/multimodal.md)
        from minigpt.cli.vision_chat import ImageChatSession, load_image
        from minigpt.model.vision import load_vision_language_model

        vlm, tokens = load_vision_language_model(cfg.run, map_location=cfg.device, field="run")
        image = load_image(cfg.image, vlm.tower.config.image_size)
        image_session = ImageChatSession(vlm, tokens, image, cfg.sampling.max_new_tokens)
        image_session.set_system(cfg.system or "")
        repl(image_session, console.input, console)  # type: ignore[arg-type]
        return
    model, tokenizer = load_model_and_tokenizer(cfg.run, map_location=cfg.device)
    if cfg.sampling.strategy == "beam":
        raise ConfigError("sampling.strategy=beam cannot stream a chat answer; use sampling.strategy=sample or greedy.")
    guard = safety_filter_from_config(cfg)
    session = ChatSession(model, tokenizer, generation_config(cfg.sampling, tokenizer), system=cfg.system)
    repl(session, console.input, console, torch.Generator(device=cfg.device).manual_seed(cfg.seed), guard)


if __name__ == "__main__":
    main()
