"""The FastAPI application: OpenAI's chat and text completions, models, health, metrics and the chat page.

Why FastAPI + uvicorn rather than LitServe (docs/serving.md): the server's core is our own continuous
batching engine, which must see every request as it arrives and stream every token as it is chosen.
LitServe brings its own batching (requests collected into a fixed batch for a `predict` call) and runs
the model in worker processes of its own; both would sit between the requests and the engine. FastAPI
gives the HTTP layer alone (validation from the request models, server-sent events, disconnects,
exception handlers), and uvicorn serves it in the process that holds the model.

Responses follow OpenAI's wire format: `choices`, `message` / `delta`, `finish_reason`, `usage`, and
streams of `data: {chunk}` events closed by `data: [DONE]`. With a `SafetyFilter` (`safety=filter`), the
input of each request and each finished reply pass it first (minigpt/serve/guard.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from minigpt.alignment.safety_filter import SafetyFilter
from minigpt.inference.chat import chat_prompt_ids, reply_end_ids
from minigpt.inference.config import GenerationConfig
from minigpt.inference.continuous import ContinuousBatcher
from minigpt.model.transformer import Transformer
from minigpt.serve.errors import APIError, BodyLimit, install_error_handlers
from minigpt.serve.guard import Choice, screen_prompt, screen_reply
from minigpt.serve.images import ImageChat, has_images, message_text
from minigpt.serve.metrics import CountRequests, ServerMetrics
from minigpt.serve.replies import Replies, Wakeups
from minigpt.serve.schemas import ChatRequest, CompletionRequest, Sampling
from minigpt.serve.settings import ServeSettings
from minigpt.tokenizer.base import Tokenizer

MAX_STOPS = 4  # OpenAI's limit on `stop` strings


def create_app(
    model: Transformer,
    tokenizer: Tokenizer,
    settings: ServeSettings,
    guard: SafetyFilter | None = None,
    images: ImageChat | None = None,
) -> FastAPI:
    """The server for `model` and `tokenizer`; its engine runs while the app does (lifespan).

    `guard`: the safety filter every request's input and every reply pass (None: no filter).
    `images`: the vision-language model of a multimodal folder, which answers the chat requests that show
    images (`minigpt.serve.images`); None: image parts are refused.
    """
    # The engine's KV cache takes the weights' dtype; logits are cast to float32 before a token is chosen.
    model = model.to(settings.torch_dtype)
    metrics = ServerMetrics()
    engine = ContinuousBatcher(
        model,
        tokenizer,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        max_total_tokens=settings.max_total_tokens,
        max_prefill_tokens=settings.max_prefill_tokens,
        on_step=metrics.observe_step,
    )
    metrics.watch(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api.wakeups = Wakeups(asyncio.get_running_loop())
        engine.start()
        yield
        engine.close()

    api = _Api(model, tokenizer, settings, engine, metrics, guard, images)
    app = FastAPI(title="minigpt", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.metrics, app.state.settings, app.state.guard = engine, metrics, settings, guard
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CountRequests, requests=metrics.requests)  # added last: outermost, so 413s count too

    auth = [Depends(api.check_key)]
    app.get("/v1/models", dependencies=auth)(api.models)
    app.post("/v1/chat/completions", dependencies=auth)(api.chat)
    app.post("/v1/completions", dependencies=auth)(api.completions)
    app.get("/health")(api.health)
    app.get("/metrics")(api.prometheus)
    app.get("/", response_class=HTMLResponse)(api.page)
    return app


class _Api:
    """The route handlers, sharing the model, the engine and the settings."""

    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        settings: ServeSettings,
        engine: ContinuousBatcher,
        metrics: ServerMetrics,
        guard: SafetyFilter | None = None,
        images: ImageChat | None = None,
    ) -> None:
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.engine, self.metrics, self.guard, self.images = engine, metrics, guard, images
        self.wakeups: Wakeups | None = None  # made for the server's event loop when it starts (lifespan)
        self.created = int(time.time())

    async def check_key(self, request: Request) -> None:
        """With an `api_key` set, /v1/* want `Authorization: Bearer <api_key>` (401 otherwise)."""
        key = self.settings.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), key.encode()):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def models(self) -> dict[str, Any]:
        """GET /v1/models: the one model served."""
        return {"object": "list", "data": [self._model_card()]}

    def _model_card(self) -> dict[str, Any]:
        config = self.model.config
        return {
            "id": self.settings.model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "minigpt",
            "context_length": config.block_size,
        }

    async def health(self) -> dict[str, Any]:
        """GET /health: liveness, with the queue and the running batch."""
        return {"status": "ok", "queue_length": self.engine.queue_length, "batch_size": self.engine.batch_size}

    async def prometheus(self) -> Response:
        """GET /metrics: Prometheus' text format."""
        return Response(self.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def page(self) -> HTMLResponse:
        """GET /: the chat page (one static file, no build step)."""
        return HTMLResponse(resources.files("minigpt.serve").joinpath("static/index.html").read_text("utf-8"))

    async def chat(self, body: ChatRequest, request: Request) -> Response:
        """POST /v1/chat/completions: answer the conversation with the chat template of the model folder."""
        if self.images is not None and self.images.wanted(body.messages):
            return await self._image_chat(body)
        if has_images(body.messages):
            raise APIError(
                400,
                f"The model {self.settings.model_name!r} reads text only; serve the model folder of a "
                "stage=multimodal run to send images.",
                param="messages",
                code="image_input_not_supported",
            )
        messages = [{"role": m.role, "content": message_text(m)} for m in body.messages]
        prompt = chat_prompt_ids(self.tokenizer, messages)
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        config = self._config(body, prompt, limit, reply_end_ids(self.tokenizer))
        said = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")  # the new input
        return await self._answer(request, body, prompt, config, said, "chat.completion", "/v1/chat/completions")

    async def _image_chat(self, body: ChatRequest) -> Response:
        """A conversation with images: one greedy reply, answered whole (or as a stream of one piece),
        through the same limits and safety filter as text (`minigpt.serve.images`)."""
        assert self.images is not None
        started, endpoint = time.perf_counter(), "/v1/chat/completions"
        self.images.check_sampling(body)
        example = self.images.example(body.messages)
        prompt = self.images.prompt_ids(example)
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        config = self._config(body, prompt, limit, [])  # the model, stop strings, max_tokens and prompt limits
        said = next((m["content"] for m in reversed(example.prompt) if m["role"] == "user"), "")
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": self.settings.model_name,
        }
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        self.metrics.prompt_tokens.inc(len(prompt))
        refused = await asyncio.to_thread(screen_prompt, self.guard, said, 1) if self.guard else None
        if refused is not None:
            self._count_filtered(refused)
            usage = {"prompt_tokens": len(prompt), "completion_tokens": 0, "total_tokens": len(prompt)}
            return self._whole(head, "chat.completion", refused, usage, body.stream, include_usage)
        # The forward passes run off the event loop, so that text requests keep streaming meanwhile.
        choice, usage = await asyncio.to_thread(self.images.answer, example, config.max_new_tokens, body.stop_strings())
        if self.guard is not None:
            choice = await asyncio.to_thread(screen_reply, self.guard, said, choice)
            self._count_filtered([choice])
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return self._whole(head, "chat.completion", [choice], usage, body.stream, include_usage)

    async def completions(self, body: CompletionRequest, request: Request) -> Response:
        """POST /v1/completions: continue the prompt, stopping at `<|eos|>` (as `minigpt.cli.generate`)."""
        prompt = self.tokenizer.encode(body.prompt, allow_special=True) or [self.tokenizer.bos_id or 0]
        ends = [self.tokenizer.eos_id] if self.tokenizer.eos_id is not None else []
        config = self._config(body, prompt, body.max_tokens, ends)
        return await self._answer(request, body, prompt, config, body.prompt, "text_completion", "/v1/completions")

    def _config(self, body: Sampling, prompt: list[int], max_tokens: int | None, ends: list[int]) -> GenerationConfig:
        """Check the request against the limits; the generator's settings for its choices."""
        settings = self.settings
        if body.model is not None and body.model != settings.model_name:
            raise APIError(
                404,
                f"The model {body.model!r} does not exist; this server serves {settings.model_name!r}.",
                param="model",
                code="model_not_found",
            )
        stops = body.stop_strings()
        if len(stops) > MAX_STOPS:
            raise APIError(400, f"stop takes at most {MAX_STOPS} strings, got {len(stops)}.", param="stop")
        if max_tokens is not None and max_tokens > settings.max_tokens_cap:
            raise APIError(
                400,
                f"max_tokens={max_tokens} is more than this server's cap of {settings.max_tokens_cap}.",
                param="max_tokens",
            )
        if len(prompt) > settings.max_prompt_tokens:
            raise APIError(
                400,
                f"The prompt has {len(prompt)} tokens, more than this server's limit of {settings.max_prompt_tokens}.",
                param="messages" if isinstance(body, ChatRequest) else "prompt",
                code="context_length_exceeded",
            )
        greedy = body.temperature == 0.0
        return GenerationConfig(
            max_new_tokens=max_tokens or settings.default_max_tokens,
            strategy="greedy" if greedy else "sample",
            temperature=1.0 if greedy else body.temperature,
            top_p=None if body.top_p >= 1.0 else body.top_p,
            stop_tokens=ends,
            stop_strings=stops,
        )

    async def _answer(
        self,
        request: Request,
        body: Sampling,
        prompt: list[int],
        config: GenerationConfig,
        said: str,
        kind: str,
        endpoint: str,
    ) -> Response:
        """Generate the choices and answer, as one JSON object or as server-sent events.

        With the safety filter, `said` (the request's new input) is checked first, and each reply once it
        has ended, before the client sees any of it: a filtered stream sends every choice whole.
        """
        id_ = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        head = {"id": id_, "created": int(time.time()), "model": self.settings.model_name}
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        # The classifier's forward pass runs off the event loop, so that other requests keep streaming.
        refused = await asyncio.to_thread(screen_prompt, self.guard, said, body.n) if self.guard else None
        if refused is not None:
            self._count_filtered(refused)
            usage = {"prompt_tokens": len(prompt), "completion_tokens": 0, "total_tokens": len(prompt)}
            return self._whole(head, kind, refused, usage, body.stream, include_usage)
        replies = self._submit(body, prompt, config, stream=body.stream and self.guard is None)
        if body.stream and self.guard is None:
            stream = self._stream(replies, head, kind, include_usage, endpoint)
            return _event_stream(stream)
        choices = await self._collect(request, replies)
        self._observe(replies, endpoint)
        if self.guard is not None:
            guard, finished = self.guard, choices
            choices = await asyncio.to_thread(lambda: [screen_reply(guard, said, c) for c in finished])
            self._count_filtered(choices)
        response = self._whole(head, kind, choices, replies.usage(), body.stream, include_usage)
        response.headers["Server-Timing"] = replies.server_timing()  # where the time went (benchmarks/serve.py)
        return response

    def _submit(self, body: Sampling, prompt: list[int], config: GenerationConfig, stream: bool) -> Replies:
        """Submit the request's `n` choices to the engine (`stream`: read their tokens as they come)."""
        self.metrics.prompt_tokens.inc(len(prompt) * body.n)
        assert self.wakeups is not None, "the app's lifespan has not started"
        return Replies(
            self.engine,
            self.wakeups,
            self.tokenizer,
            prompt,
            config,
            n=body.n,
            seed=body.seed,
            stops=body.stop_strings(),
            stream=stream,
            retry_after_s=self.settings.retry_after_s,
        )

    async def _collect(self, request: Request, replies: Replies) -> list[Choice]:
        """Every choice of `replies` once it has ended (cancelled if the client goes away first)."""
        texts = [""] * len(replies.requests)
        reasons: list[str | None] = [None] * len(texts)
        watcher = asyncio.create_task(_cancel_on_disconnect(request, replies))
        try:
            async for event in replies.events(self.settings.request_timeout_s):
                texts[event.index] += event.text
                reasons[event.index] = event.finish_reason or reasons[event.index]
        finally:
            watcher.cancel()
            replies.cancel()  # a no-op for finished choices; frees the rows of a request that failed
        return [Choice(text, reason) for text, reason in zip(texts, reasons)]

    def _count_filtered(self, choices: list[Choice]) -> None:
        """Count the filter's interventions by where, what and which principle (`/metrics`)."""
        for c in choices:
            if c.safety is not None:
                self.metrics.filtered.labels(c.safety["where"], c.safety["action"], c.safety["principle"]).inc()

    def _whole(
        self,
        head: dict[str, Any],
        kind: str,
        choices: list[Choice],
        usage: dict[str, int],
        stream: bool,
        include_usage: bool,
    ) -> Response:
        """Finished choices as one JSON object, or (`stream`) as a stream that sends each choice in one piece."""
        chat = kind == "chat.completion"
        if stream:
            return _event_stream(_whole_stream(head, chat, choices, usage if include_usage else None))
        body = []
        for i, c in enumerate(choices):
            content = {"message": {"role": "assistant", "content": c.text}} if chat else {"text": c.text}
            safety = {} if c.safety is None else {"safety": c.safety}
            body.append({"index": i, **content, "logprobs": None, "finish_reason": c.finish_reason, **safety})
        return JSONResponse({**head, "object": kind, "choices": body, "usage": usage})

    def _observe(self, replies: Replies, endpoint: str) -> None:
        """Latency histograms of a finished request."""
        now = time.perf_counter()
        self.metrics.latency.labels(endpoint).observe(now - replies.started)
        if replies.first_token_at is not None:
            self.metrics.first_token.observe(replies.first_token_at - replies.started)

    async def _stream(
        self, replies: Replies, head: dict[str, Any], kind: str, include_usage: bool, endpoint: str
    ) -> AsyncIterator[str]:
        """Server-sent events in OpenAI's chunk format; a client that goes away cancels the choices."""
        chat = kind == "chat.completion"

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            return _chunk(head, chat, choices, **extra)

        try:
            if chat:  # OpenAI opens each choice with its role
                yield chunk([_choice(chat, i, "", None, role=True) for i in range(len(replies.texts))])
            try:
                async for event in replies.events(self.settings.request_timeout_s):
                    if event.text:
                        yield chunk([_choice(chat, event.index, event.text, None)])
                    if event.finish_reason is not None:
                        yield chunk([_choice(chat, event.index, None if chat else "", event.finish_reason)])
            except APIError as err:  # the status is sent already: the error goes in the stream
                error = {"message": err.detail, "type": "server_error", "code": err.code}
                yield f"data: {json.dumps({'error': error})}\n\n"
            else:
                self._observe(replies, endpoint)
                if include_usage:
                    yield chunk([], usage=replies.usage())
            yield "data: [DONE]\n\n"
        finally:  # also when the client disconnects: the response task is cancelled here
            replies.cancel()


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    """Server-sent events, never cached on the way."""
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _chunk(head: dict[str, Any], chat: bool, choices: list[dict[str, Any]], **extra: Any) -> str:
    """One server-sent event: a chunk of OpenAI's stream format."""
    object_ = "chat.completion.chunk" if chat else "text_completion"
    return f"data: {json.dumps({**head, 'object': object_, 'choices': choices, **extra})}\n\n"


def _choice(chat: bool, index: int, text: str | None, reason: str | None, role: bool = False) -> dict[str, Any]:
    """A choice of a stream chunk: a chat `delta` (opened with the role) or a completion's `text`."""
    if not chat:
        return {"index": index, "text": text or "", "logprobs": None, "finish_reason": reason}
    delta: dict[str, str] = {"role": "assistant"} if role else {}
    if text is not None:
        delta["content"] = text
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}


async def _whole_stream(
    head: dict[str, Any], chat: bool, choices: list[Choice], usage: dict[str, int] | None
) -> AsyncIterator[str]:
    """Finished choices as a stream: the role, each text in one piece, its end (with the filter's report)."""
    if chat:
        yield _chunk(head, chat, [_choice(chat, i, "", None, role=True) for i in range(len(choices))])
    for i, c in enumerate(choices):
        if c.text:
            yield _chunk(head, chat, [_choice(chat, i, c.text, None)])
        end = _choice(chat, i, None if chat else "", c.finish_reason)
        yield _chunk(head, chat, [end if c.safety is None else {**end, "safety": c.safety}])
    if usage is not None:
        yield _chunk(head, chat, [], usage=usage)
    yield "data: [DONE]\n\n"


async def _cancel_on_disconnect(request: Request, replies: Replies) -> None:
    """Cancel `replies` when the client of a (non-streaming) request disconnects.

    Its body has been read, so the next ASGI message is `http.disconnect`, whenever the client leaves;
    the task is cancelled once the answer is ready. (A streaming response is cancelled by Starlette.)
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass
    replies.cancel()
