"""The chat template: role markers as special tokens, and which tokens an SFT loss is computed on.

A conversation is rendered as

    <|bos|> <|user|> how much is 2+3? <|end|> <|assistant|> 5 <|end|> ...

Each role marker and the end-of-turn marker is one *special* token, so user text can never forge a turn
boundary (special strings in content are encoded as ordinary characters). The mask returned with the ids
marks the tokens the model is trained to produce: the assistant's content and its closing `<|end|>`,
which is how the model learns to stop (Ouyang et al. 2022, InstructGPT §3.5, train on demonstrations
only; the prompt tokens are conditioning, not targets).
"""

from __future__ import annotations

from collections.abc import Callable

from minigpt.tokenizer.base import Tokenizer

CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
END_OF_TURN = "<|end|>"
ROLES = ("system", "user", "assistant")
# One placeholder per image token: its embedding is replaced by a projected image patch
# (`minigpt.model.vision`); like the role markers it is special, so no text can produce it.
IMAGE_TOKEN = "<|image|>"
AUDIO_TOKEN = "<|audio|>"


def has_chat_tokens(tokenizer: Tokenizer) -> bool:
    """Whether every chat special token is already in the tokenizer."""
    return all(token in tokenizer.special_tokens for token in CHAT_TOKENS)


def add_chat_tokens(tokenizer: Tokenizer) -> list[int]:
    """Add the chat special tokens that are missing (idempotent); returns the ids of all of them."""
    return tokenizer.add_special_tokens(CHAT_TOKENS)


def add_image_token(tokenizer: Tokenizer) -> int:
    """Add `<|image|>` (after the chat tokens) if missing; returns its id."""
    add_chat_tokens(tokenizer)
    return tokenizer.add_special_tokens([IMAGE_TOKEN])[0]


def add_audio_token(tokenizer: Tokenizer) -> int:
    """Add `<|audio|>` (after the chat tokens) if missing; returns its id."""
    add_chat_tokens(tokenizer)
    return tokenizer.add_special_tokens([AUDIO_TOKEN])[0]


def placeholder_encoder(
    tokenizer: Tokenizer, marker: str, placeholder_id: int, count: int, allow_special: bool = False
) -> Callable[[str], list[int]]:
    """An `encode_content` for `render_chat` that writes each `marker` of a message (`<image>`, `<audio>`) as
    `count` placeholder tokens (one per encoder vector of the image or clip) and encodes the text around it
    (`allow_special`: special tokens written in the text are read as such, for a raw prompt)."""

    def encode(text: str) -> list[int]:
        parts = [tokenizer.encode(part, allow_special=allow_special) for part in text.split(marker)]
        ids = parts[0]
        for part in parts[1:]:
            ids = ids + [placeholder_id] * count + part
        return ids

    return encode


def role_token(role: str) -> str:
    """The special token that opens a turn of `role`."""
    if role not in ROLES:
        raise ValueError(f"Unknown chat role {role!r}; use one of {list(ROLES)}.")
    return f"<|{role}|>"


def render_chat(
    tokenizer: Tokenizer,
    messages: list[dict[str, str]],
    add_generation_prompt: bool = False,
    encode_content: Callable[[str], list[int]] | None = None,
) -> tuple[list[int], list[bool]]:
    """Render `messages` ({"role", "content"} dicts) into token ids and a loss mask of the same length.

    ids = [bos] + for each message: [<|role|>] + encode(content) + [<|end|>], then [<|assistant|>] when
    `add_generation_prompt` (so that generation continues with the assistant's answer). The mask is True
    on assistant content tokens and their closing `<|end|>`, False elsewhere. Content is encoded without
    special tokens: text cannot inject a turn boundary. `encode_content` replaces `tokenizer.encode` for
    the content (multimodal data expands its `<image>` markers into `<|image|>` placeholders there).
    """
    encode = encode_content or tokenizer.encode
    end = tokenizer.special_id(END_OF_TURN)
    ids: list[int] = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    mask: list[bool] = [False] * len(ids)
    for message in messages:
        marker = tokenizer.special_id(role_token(message["role"]))
        content = encode(message["content"]) + [end]
        trained = message["role"] == "assistant"
        ids += [marker, *content]
        mask += [False] + [trained] * len(content)
    if add_generation_prompt:
        ids.append(tokenizer.special_id(role_token("assistant")))
        mask.append(False)
    return ids, mask
