"""`Replies`: the `n` choices of one API request, decoded by the engine and read back as async events.

The engine runs in a thread of its own and the handlers on the server's event loop, and both take
turns at Python's one interpreter lock. Each wake-up of the loop from the engine's thread
(`call_soon_threadsafe`: a write to the loop's self-pipe, then the loop's thread taking the lock) stalls
the engine's step until the loop lets go, so the engine asks for as few as it can:

- the choices of every request share one `Wakeups`: while a wake-up is on its way, a callback only
  adds its request to the ones that wake-up will serve, so a decoding step over many rows costs about
  one wake-up, not one per row;
- a request that is not streamed is woken only when a choice ends (its tokens are read then), not at
  every token;
- a woken handler reads all tokens that arrived since it last looked (`Request.tokens`, which only the
  engine appends to), and decodes them in one go.

Whoever stops reading (a client gone, a timeout) calls `cancel`, and the engine frees the rows at its
next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

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


class Wakeups:
    """Wakes the handlers of an event loop from the engine's thread, with at most one wake-up on its way."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._due: set[Replies] = set()
        self._sent = False

    def notify(self, replies: Replies) -> None:
        """(Engine thread) `replies` has news: wake its handler with the next wake-up of the loop."""
        with self._lock:
            self._due.add(replies)
            if self._sent:
                return
            self._sent = True
        self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        """(Event loop) Wake every handler that had news since the last wake-up."""
        with self._lock:
            due, self._due, self._sent = self._due, set(), False
        for replies in due:
            replies.ready.set()


class Replies:
    """Submit `n` requests for `prompt` to `engine`; iterate `events()` for their text.

    `stream`: events carry text as it is decoded; otherwise one event per choice, when it ends.
    Raises `APIError` 429 (with Retry-After) when the engine's queue is full and 400 for a request the
    engine refuses (over its token limit).
    """

    def __init__(
        self,
        engine: ContinuousBatcher,
        wakeups: Wakeups,
        tokenizer: Tokenizer,
        prompt: list[int],
        config: GenerationConfig,
        *,
        n: int,
        seed: int | None,
        stops: list[str],
        stream: bool,
        retry_after_s: int,
    ) -> None:
        self.wakeups, self.stream = wakeups, stream
        self.ready = asyncio.Event()
        self.started = time.perf_counter()
        self.first_token_at: float | None = None  # set on the engine's thread
        self.finished_at: float | None = None  # engine's thread: when its last choice ended
        self.prompt_tokens = len(prompt)
        self.texts = [ReplyText(tokenizer, stops) for _ in range(n)]
        self.requests: list[Request] = []
        try:
            for index in range(n):
                generator = None if seed is None else torch.Generator(engine.device).manual_seed(seed + index)
                request = Request(prompt, config, generator, on_token=self._on_token, on_finish=self._on_finish)
                self.requests.append(engine.submit(request))
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

    def _on_token(self, token: int) -> None:
        """(Engine thread) A choice has a new token."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if self.stream:
            self.wakeups.notify(self)

    def _on_finish(self, reason: str) -> None:
        """(Engine thread) A choice has ended."""
        self.finished_at = time.perf_counter()
        self.wakeups.notify(self)

    def server_timing(self) -> str:
        """A `Server-Timing` header (W3C Server Timing) for a finished request, in milliseconds: `first`
        (submitted to first token: the queue wait and the step it joined in), `decode` (first token to the
        last choice's end), `wake` (that end to now: the event loop's wake-up of this handler) and `total`.

        A client that subtracts `total` from its own latency gets what HTTP and its own side added.
        """
        now = time.perf_counter()
        first = self.first_token_at if self.first_token_at is not None else now
        end = self.finished_at if self.finished_at is not None else now
        parts = {"first": first - self.started, "decode": end - first, "wake": now - end, "total": now - self.started}
        return ", ".join(f"{name};dur={seconds * 1000:.2f}" for name, seconds in parts.items())

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
        done = [False] * len(self.requests)
        deadline = self.started + timeout_s
        while not all(done):
            self.ready.clear()  # before reading: news that comes after the reads below sets it again
            for index, request in enumerate(self.requests):
                if done[index]:
                    continue
                reason = request.finish_reason  # read first: once it is set, `tokens` is complete
                text = self.texts[index]
                piece = text.push(request.tokens[text.token_count :])
                if reason is None:
                    if piece:
                        yield Event(index, piece)
                    continue
                done[index] = True
                if reason == "cancelled":  # the client went away (nginx's 499: client closed request)
                    raise APIError(499, "The request was cancelled.", code="cancelled")
                if reason not in ("stop", "length"):
                    raise APIError(500, f"Generation ended with {reason}.")
                yield Event(index, piece + text.finish(), reason)
            if all(done):
                return
            try:
                if time.perf_counter() > deadline:  # also while tokens keep coming
                    raise asyncio.TimeoutError
                await asyncio.wait_for(self.ready.wait(), deadline - time.perf_counter())
            except asyncio.TimeoutError:
                self.cancel()
                raise APIError(504, f"The request took longer than {timeout_s:g} s.", code="timeout") from None
