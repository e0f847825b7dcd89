"""Shared pieces of the serving tests: a tiny chat model folder and a server running in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import uvicorn

from minigpt.alignment.safety_filter import SafetyFilter
from minigpt.model import ModelConfig, Transformer
from minigpt.model.folder import load_model_and_tokenizer, save_model_folder
from minigpt.serve.app import create_app
from minigpt.serve.settings import ServeSettings
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens

TEXT = "the quick brown fox jumps over the lazy dog. 0123456789+=?!\n"


def chat_model_folder(folder: Path, seed: int = 0, block_size: int = 64, endless: bool = False) -> Path:
    """A tiny random GPT with a character tokenizer that has the chat tokens, saved as a model folder.

    `init_std=0.3`: its greedy replies vary from token to token (at the default 0.02 a random model repeats
    one character), so that a token decoded out of place changes the text. `endless`: greedy decoding never
    ends a reply, for tests of long requests: the special tokens' rows of the (tied) head are zero, so
    their logits are 0, below the largest of the other tokens' (positive, as the final LayerNorm's output
    sums to zero over its features).
    """
    tokenizer = CharTokenizer.train(TEXT)
    add_chat_tokens(tokenizer)
    torch.manual_seed(seed)
    config = ModelConfig(
        n_layer=2, n_head=4, n_embd=32, block_size=block_size, vocab_size=tokenizer.vocab_size, init_std=0.3
    )
    model = Transformer(config).eval()
    if endless:
        with torch.no_grad():
            model.lm_head.weight[tokenizer.n_base :] = 0.0
    return save_model_folder(folder, model, tokenizer)


@contextmanager
def running_server(folder: str | Path, guard: SafetyFilter | None = None, **settings: object) -> Iterator[str]:
    """Serve the model folder on a free loopback port in a thread; yields the base URL (http://127.0.0.1:port).

    `guard`: the safety filter of `safety=filter`; `settings`: `ServeSettings` fields.
    """
    model, tokenizer = load_model_and_tokenizer(folder)
    app = create_app(model, tokenizer, ServeSettings(**settings), guard)  # type: ignore[arg-type]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
