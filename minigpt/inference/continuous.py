"""Continuous batching: requests join the running batch at any decoding step and leave when they finish.

A server that batches requests the static way (`generate` on a list of prompts) makes a new request
wait for the whole batch to finish, and the batch shrinks as its sequences end. Iteration-level
scheduling (Yu et al. 2022, "Orca", §3.1) decides again at every step: each iteration of
`ContinuousBatcher.step` admits waiting requests into free rows (within a prefill budget, so that
running requests are not stalled for long), then runs one forward pass over every row: one token for
each running row, and the whole prompt of each newcomer. A row whose request ends (stop token or
string, its token limit, a cancelled request) is freed at once and the next request takes it over: the
KV cache keeps one slot row per running request (`SlotCache`), each filled to its own length.

Newcomers are prefilled in the decoding step itself, not in a forward pass of their own (Orca's
selective batching, §3.2): the step's tokens are packed as rows of one token each, so the projections
and MLPs run once for all of them and only attention is split per request (`SlotCache.attend`). The
requests that arrive together, and the running ones, then share one pass: on a CPU, where a small
model's forward pass is mostly per-operation overhead, a separate prefill pass per arrival was a stall
of the whole batch each time. A row that reaches the context window is shifted to its last half-window
exactly as `BatchDecoder` shifts one, in the same way: its half-window is prefilled in the next step's
pass. Tokens are chosen by `minigpt.inference.sampling`; with the same options a request gets the
tokens `generate` would give it alone (greedy, or sampled with the same seed).

The engine runs in a thread of its own (`start`); `submit` and `Request.cancel` may be called from any
thread, and the request's callbacks are called on the engine's thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from minigpt.inference.config import GenerationConfig
from minigpt.inference.generate import StopStrings
from minigpt.inference.sampling import process_logits, sample_from
from minigpt.inference.slot_cache import SlotCache
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The engine's waiting queue is full: the caller should try again later."""


@dataclass(eq=False)
class Request:
    """One sequence to generate: `config.max_new_tokens` at most after `prompt`, stopping at its stops.

    `on_token(id)` is called for each new token and `on_finish(reason)` once at the end, with reason
    "stop" (a stop token or string), "length" (the token limit), "cancelled" or "error".
    """

    prompt: list[int]
    config: GenerationConfig
    generator: torch.Generator | None = None
    on_token: Callable[[int], None] | None = None
    on_finish: Callable[[str], None] | None = None
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    cancelled: bool = False

    @property
    def budget(self) -> int:
        """The tokens it may hold at most: its prompt and all its new tokens (the global limit counts these)."""
        return len(self.prompt) + self.config.max_new_tokens

    def cancel(self) -> None:
        """Stop generating (a client went away); the engine frees its row at its next step."""
        self.cancelled = True

    def finish(self, reason: str) -> None:
        """Record why it ended and tell the caller (once)."""
        if self.finish_reason is None:
            self.finish_reason = reason
            if self.on_finish is not None:
                self.on_finish(reason)


@dataclass(eq=False)
class _Row:
    """A running request and what decoding it needs beyond the cache: its whole text, for a context shift."""

    request: Request
    history: list[int]
    stops: StopStrings | None


class ContinuousBatcher:
    """Decodes up to `max_batch` requests at once, admitting waiting ones at every step.

    Args:
        model: the language model (put in eval mode).
        tokenizer: needed for requests with stop strings.
        max_batch: rows decoded together (running requests).
        max_queue: requests that may wait while every row is busy; `submit` raises `QueueFull` beyond.
        max_total_tokens: the most prompt + new tokens that running requests may hold together (None: no
            limit beyond `max_batch` rows); a request waits until it fits.
        max_prefill_tokens: newcomers' prompt tokens prefilled per step at most (at least one request is
            admitted): bounds how long a step of the running requests waits for newcomers.
        on_step: called after each step with the number of rows in its forward pass (running and
            joining requests) and of tokens produced (one per row).
    """

    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer | None = None,
        *,
        max_batch: int = 8,
        max_queue: int = 64,
        max_total_tokens: int | None = None,
        max_prefill_tokens: int = 2048,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch={max_batch} must be ≥ 1 and max_queue={max_queue} ≥ 0.")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.max_total_tokens, self.max_prefill_tokens = max_total_tokens, max_prefill_tokens
        self.on_step = on_step
        self.capacity = model.config.block_size
        device = model.tok_emb.weight.device
        self.cache = SlotCache(model, max_batch, self.capacity)
        self.next_pos = torch.zeros(max_batch, dtype=torch.long, device=device)  # position of each row's next token
        self.pending = torch.zeros(max_batch, dtype=torch.long, device=device)  # the token each row feeds next
        self.running: list[_Row] = []
        self.waiting: deque[Request] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- what other threads call ---

    def submit(self, request: Request) -> Request:
        """Queue `request`; raises `QueueFull` when the queue is full, `ValueError` for a request it cannot run."""
        config = request.config
        config.validate()
        if config.strategy == "beam" or config.num_return_sequences != 1 or config.repetition_penalty != 1.0:
            raise ValueError(
                "the engine decodes one greedy or sampled sequence per request, without repetition penalty."
            )
        if not request.prompt:
            raise ValueError("a request needs at least one prompt token.")
        if config.stop_strings and self.tokenizer is None:
            raise ValueError("stop strings need the engine's tokenizer.")
        if self.max_total_tokens is not None and request.budget > self.max_total_tokens:
            raise ValueError(
                f"the request holds {request.budget} tokens (prompt + max new tokens), more than the "
                f"engine's limit of {self.max_total_tokens}."
            )
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed.")
            if len(self.waiting) + len(self.running) >= self.max_batch + self.max_queue:
                raise QueueFull(f"{len(self.running)} requests are running and {len(self.waiting)} waiting.")
            self.waiting.append(request)
            self._wake.notify()
        return request

    @property
    def device(self) -> torch.device:
        """Where the model runs (a request's sampling generator must live there too)."""
        return self.next_pos.device

    @property
    def queue_length(self) -> int:
        """Requests waiting for a row."""
        return len(self.waiting)

    @property
    def batch_size(self) -> int:
        """Requests running now."""
        return len(self.running)

    def start(self) -> ContinuousBatcher:
        """Run the engine in a background thread until `close`."""
        self._thread = threading.Thread(target=self._loop, name="minigpt-engine", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread; requests still waiting or running end as "cancelled"."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        for row in self.running:
            row.request.finish("cancelled")
        for request in self.waiting:
            request.finish("cancelled")
        self.running, self.waiting = [], deque()

    def _loop(self) -> None:
        """Step while there is work, sleep while there is none. An error fails the requests, not the engine."""
        while True:
            with self._wake:
                while not self._closed and not self.waiting and not self.running:
                    self._wake.wait()
                if self._closed:
                    return
            try:
                self.step()
            except Exception:
                log.exception("decoding step failed; its requests end with an error")
                for row in self.running:
                    row.request.finish("error")
                self.running = []

    # --- the engine's own thread ---

    @torch.inference_mode()
    def step(self) -> int:
        """One iteration: free cancelled rows, admit waiting requests, one forward pass for every row.

        The forward pass decodes one token for each running row and prefills, alongside, the rows that
        joined and those whose context was full (`SlotCache`: one packed pass). Returns the tokens produced.
        """
        self._release([row for row, state in enumerate(self.running) if state.request.cancelled], "cancelled")
        # A row whose cache is full continues from the last half-window of its text, as `BatchDecoder`
        # shifts one: it is prefilled again, and so moves behind the decoding rows.
        lengths = self.cache.lengths.tolist()  # one read, not one tensor index per row
        full = [row for row in range(len(self.running)) if lengths[row] == self.capacity]
        shifted = [self.running[row] for row in full]
        self._release(full, None)
        decoding = len(self.running)
        windows = [state.history[-max(1, self.capacity // 2) :] for state in shifted]
        self.running += shifted
        windows += [state.history[-self.capacity :] for state in self._admit()]
        rows = len(self.running)
        if not rows:
            return 0
        idx, positions, last = self.pending[:decoding], self.next_pos[:decoding], None
        if windows:  # the prefill rows' tokens follow the decoding rows' one token each
            device = self.pending.device
            flat = [token for window in windows for token in window]
            idx = torch.cat([idx, torch.tensor(flat, device=device)])
            positions = torch.cat([positions, torch.tensor([i for w in windows for i in range(len(w))], device=device)])
            ends = torch.tensor([len(window) for window in windows], device=device).cumsum(0) + decoding - 1
            last = torch.cat([torch.arange(decoding, device=device), ends])  # each row's last token
        self.cache.begin_step(decoding, [len(window) for window in windows])
        hidden, _ = self.model.hidden_states(idx[:, None], positions=positions[:, None], kv_cache=self.cache)
        self.cache.end_step()
        self.next_pos[:decoding] += 1
        for row, window in enumerate(windows, start=decoding):
            self.next_pos[row] = len(window)
        hidden = hidden[:, -1] if last is None else hidden[last, -1]
        produced = self._advance(self.model.lm_head(hidden))
        self._release_finished()
        if self.on_step is not None:
            self.on_step(rows, produced)
        return produced

    def _admit(self) -> list[_Row]:
        """Move waiting requests into free rows (FIFO, within the limits); returns their new rows."""
        if not self.waiting:  # read without the lock: a request submitted meanwhile waits for the next step
            return []
        admitted: list[Request] = []
        held = sum(row.request.budget for row in self.running)
        prefill = 0
        with self._wake:
            while self.waiting and len(self.running) + len(admitted) < self.max_batch:
                request = self.waiting[0]
                if request.cancelled:
                    self.waiting.popleft().finish("cancelled")
                    continue
                if self.max_total_tokens is not None and held + request.budget > self.max_total_tokens:
                    break
                tokens = min(len(request.prompt), self.capacity)
                if admitted and prefill + tokens > self.max_prefill_tokens:
                    break
                admitted.append(self.waiting.popleft())
                held, prefill = held + request.budget, prefill + tokens
            rows = []
            for request in admitted:  # under the lock: `submit` counts waiting + running requests
                strings = request.config.stop_strings
                stops = StopStrings(self.tokenizer, strings) if strings and self.tokenizer is not None else None
                rows.append(_Row(request, list(request.prompt), stops))
            self.running += rows
        return rows

    def _advance(self, logits: Tensor) -> int:
        """Choose each running row's next token from `logits` (rows, V), hand it out, note finished requests.

        Returns the number of tokens produced.
        """
        tokens = self._choose(logits.float())
        for state, token in zip(self.running, tokens):
            request = state.request
            request.tokens.append(token)
            state.history.append(token)
            if request.on_token is not None:
                request.on_token(token)
            if token in request.config.stop_tokens or (
                state.stops is not None and bool(state.stops.hits(torch.tensor([request.tokens]))[0])
            ):
                request.finish("stop")
            elif len(request.tokens) >= request.config.max_new_tokens:
                request.finish("length")
        self.pending[: len(tokens)] = torch.tensor(tokens, device=self.pending.device)
        return len(tokens)

    def _choose(self, logits: Tensor) -> list[int]:
        """Each running row's next token: argmax for greedy requests, a draw from the filtered softmax otherwise."""
        chosen = logits.argmax(dim=-1).tolist()
        for i, state in enumerate(self.running):
            request = state.request
            config = request.config
            if config.strategy == "sample":
                scores = process_logits(
                    logits[i : i + 1],
                    temperature=config.temperature,
                    top_k=config.top_k,
                    top_p=config.top_p,
                    min_p=config.min_p,
                )
                chosen[i] = int(sample_from(scores, request.generator)[0])
        return chosen

    def _release_finished(self) -> None:
        """Free the rows of requests that have ended."""
        self._release([row for row, state in enumerate(self.running) if state.request.finish_reason is not None], None)

    def _release(self, rows: list[int], reason: str | None) -> None:
        """Free `rows`, moving the last running rows into them so that the running rows stay packed."""
        for row in sorted(rows, reverse=True):
            last = len(self.running) - 1
            state = self.running[row]
            if row != last:
                self.cache.move(last, row)
                self.next_pos[row], self.pending[row] = self.next_pos[last], self.pending[last]
                self.running[row] = self.running[last]
            self.running.pop()
            if reason is not None:
                state.request.finish(reason)
