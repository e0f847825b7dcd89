"""A chat session: the conversation so far, rendered with the chat template, answered by `generate`.

With a tokenizer that has the chat tokens (an SFT'd model), each turn is rendered by
`minigpt.tokenizer.chat.render_chat` and the answer ends at `<|end|>` (or `<|eos|>`). Without them (a
pretrained-only model) the session is plain continuation: the text typed so far plus the model's
continuations form one growing document, which is what a base model was trained on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt.inference.config import GenerationConfig
from minigpt.inference.generate import generate
from minigpt.inference.stream import TextStream
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN, has_chat_tokens, render_chat


def reply_end_ids(tokenizer: Tokenizer) -> list[int]:
    """The tokens that end an answer: `<|end|>` where the tokenizer has the chat tokens, and `<|eos|>`."""
    ends = [tokenizer.special_id(END_OF_TURN)] if has_chat_tokens(tokenizer) else []
    return ends + ([tokenizer.eos_id] if tokenizer.eos_id is not None else [])


def chat_prompt_ids(tokenizer: Tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The token ids the model continues to answer `messages` ({"role", "content"} dicts, oldest first).

    With the chat tokens: the chat template with the assistant's turn opened. Without them (a base
    model): the contents run together as one document, which the model continues.
    """
    if has_chat_tokens(tokenizer):
        return render_chat(tokenizer, messages, add_generation_prompt=True)[0]
    ids = tokenizer.encode("".join(message["content"] for message in messages))
    return ids or [tokenizer.bos_id or 0]


class ChatSession:
    """Holds the history; `reply(text)` adds the user's turn, generates the answer and records it.

    Args:
        model, tokenizer: the model and its tokenizer.
        config: decoding options (`stop_tokens` gets `<|end|>` / `<|eos|>` added).
        system: an optional system message (template mode) or preamble text (plain mode).
    """

    def __init__(
        self, model: Transformer, tokenizer: Tokenizer, config: GenerationConfig, system: str | None = None
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.templated = has_chat_tokens(tokenizer)
        ends = reply_end_ids(tokenizer)
        self.config = GenerationConfig(**{**vars(config), "stop_tokens": sorted({*config.stop_tokens, *ends})})
        self.system = system
        self.messages: list[dict[str, str]] = []
        self.text = ""  # plain mode: the document so far (after the system preamble)

    def reset(self) -> None:
        """Forget the conversation (the system message stays)."""
        self.messages, self.text = [], ""

    def set_system(self, text: str | None) -> None:
        """Replace the system message (None or "" removes it) and start over."""
        self.system = text or None
        self.reset()

    def prompt_ids(self, user_text: str) -> list[int]:
        """The token ids the model continues after the user says `user_text`."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        history = self.messages if self.templated else [{"role": "user", "content": self.text}]
        return chat_prompt_ids(self.tokenizer, [*system, *history, {"role": "user", "content": user_text}])

    def reply(
        self,
        user_text: str,
        on_text: Callable[[str], None] | None = None,
        generator: torch.Generator | None = None,
    ) -> str:
        """Answer `user_text`; `on_text` receives the answer piece by piece as it is generated."""
        stream = TextStream(self.tokenizer)
        stops = set(self.config.stop_tokens)

        def on_token(rows: torch.Tensor, ids: torch.Tensor) -> None:
            token = int(ids[0])
            if on_text is not None and token not in stops:
                on_text(stream.push([token]))

        out = generate(
            self.model,
            [self.prompt_ids(user_text)],
            self.config,
            pad_id=self.tokenizer.pad_id or 0,
            tokenizer=self.tokenizer,
            generator=generator,
            on_token=on_token,
        )
        tokens = out.token_lists()[0]
        if out.finish_reasons[0] == "stop":
            tokens = tokens[:-1]  # the end-of-turn marker is not part of the answer
        if on_text is not None:
            on_text(stream.flush())
        answer = self.tokenizer.decode(tokens, skip_special=True)
        if self.templated:
            self.messages += [
                {"role": "user", "content": user_text},
                {"role": "assistant", "content": answer},
            ]
        else:
            self.text += user_text + answer
        return answer
