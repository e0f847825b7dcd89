"""`Replies`: the `n` choices of one API request, decoded by the engine and read back as async events.

The engine calls back on its own thread: each callback appends to a deque and, unless a wake-up is
already on its way, wakes the server's event loop (`call_soon_threadsafe`), so that the request's
handler simply awaits events, and a loop that falls behind the engine takes several tokens per wake-up
instead of paying a wake-up for each. Whoever stops reading (a client gone, a timeout) calls `cancel`,
and the engine frees the rows at its next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import torch

from minigpt.inference.config import GenerationConfig
from minigpt.inference.continuous import ContinuousBatcher, QueueFull, Request
from minigpt.serve.errors import APIError
from minigpt.serve.text import ReplyText
from minigpt.tokenizer.base import Tokenizer


@dataclass
class Event:
    """New text of choice `index`; `finish_reason` is set on its last event ("stop" or "length")."""

    index: int
    text: str
    finish_reason: str | None = None


class Replies:
    """Submit `n` requests for `prompt` to `engine`; iterate `events()` for their text.

    Raises `APIError` 429 (with Retry-After) when the engine's queue is full and 400 for a request the
    engine refuses (over its token limit).
    """

    def __init__(
        self,
        engine: ContinuousBatcher,
        tokenizer: Tokenizer,
        prompt: list[int],
        config: GenerationConfig,
        *,
        n: int,
        seed: int | None,
        stops: list[str],
        retry_after_s: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.pending: deque[tuple[int, str, Any]] = deque()  # (choice, "token" | "finish", id | reason)
        self.ready = asyncio.Event()
        self._lock = threading.Lock()
        self._wake_sent = False
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.prompt_tokens = len(prompt)
        self.texts = [ReplyText(tokenizer, stops) for _ in range(n)]
        self.requests: list[Request] = []
        try:
            for index in range(n):
                generator = None if seed is None else torch.Generator(engine.device).manual_seed(seed + index)
                self.requests.append(
                    engine.submit(
                        Request(
                            prompt,
                            config,
                            generator,
                            on_token=self._callback(index, "token"),
                            on_finish=self._callback(index, "finish"),
                        )
                    )
                )
        except QueueFull:
            self.cancel()
            raise APIError(
                429,
                "The server is busy (its queue is full); retry after a moment.",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(retry_after_s)},
            ) from None
        except ValueError as err:
            self.cancel()
            raise APIError(400, str(err), code="context_length_exceeded") from None

    def _callback(self, index: int, kind: str) -> Callable[[Any], None]:
        """An engine callback that queues (index, kind, value) and wakes the event loop if no wake-up is due."""

        def called(value: Any) -> None:
            self.pending.append((index, kind, value))
            with self._lock:
                if self._wake_sent:
                    return
                self._wake_sent = True
            self.loop.call_soon_threadsafe(self._wake)

        return called

    def _wake(self) -> None:
        """On the event loop: let `events` read what the engine queued."""
        with self._lock:
            self._wake_sent = False
        self.ready.set()

    @property
    def completion_tokens(self) -> int:
        """New tokens generated so far, over every choice."""
        return sum(len(request.tokens) for request in self.requests)

    def usage(self) -> dict[str, int]:
        """OpenAI's `usage` object."""
        completion = self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def cancel(self) -> None:
        """Stop every choice still decoding."""
        for request in self.requests:
            request.cancel()

    async def events(self, timeout_s: float) -> AsyncIterator[Event]:
        """Text events until every choice has finished; `APIError` 504 after `timeout_s` (choices cancelled)."""
        open_choices = len(self.texts)
        deadline = self.started + timeout_s
        while open_choices:
            try:
                while not self.pending:
                    self.ready.clear()
                    if self.pending:  # queued between the check and the clear: its wake-up may have come already
                        break
                    await asyncio.wait_for(self.ready.wait(), deadline - time.perf_counter())
                if time.perf_counter() > deadline:  # also while tokens keep coming
                    raise asyncio.TimeoutError
            except asyncio.TimeoutError:
                self.cancel()
                raise APIError(504, f"The request took longer than {timeout_s:g} s.", code="timeout") from None
            index, kind, value = self.pending.popleft()
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            text = self.texts[index]
            if kind == "token":
                assert isinstance(value, int)
                piece = text.push(value)
                if piece:
                    yield Event(index, piece)
            else:
                open_choices -= 1
                reason = str(value)
                if reason == "cancelled":  # the client went away (nginx's 499: client closed request)
                    raise APIError(499, "The request was cancelled.", code="cancelled")
                if reason not in ("stop", "length"):
                    raise APIError(500, f"Generation ended with {reason}.")
                yield Event(index, text.finish(), reason)
