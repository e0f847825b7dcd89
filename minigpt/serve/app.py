"""The FastAPI application: OpenAI's chat and text completions, models, health, metrics and the chat page.

Why FastAPI + uvicorn rather than LitServe (docs/serving.md): the server's core is our own continuous
batching engine, which must see every request as it arrives and stream every token as it is chosen.
LitServe brings its own batching (requests collected into a fixed batch for a `predict` call) and runs
the model in worker processes of its own; both would sit between the requests and the engine. FastAPI
gives the HTTP layer alone (validation from the request models, server-sent events, disconnects,
exception handlers), and uvicorn serves it in the process that holds the model.

Responses follow OpenAI's wire format: `choices`, `message` / `delta`, `finish_reason`, `usage`, and
streams of `data: {chunk}` events closed by `data: [DONE]`.
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

from minigpt.inference.chat import chat_prompt_ids, reply_end_ids
from minigpt.inference.config import GenerationConfig
from minigpt.inference.continuous import ContinuousBatcher
from minigpt.model.transformer import Transformer
from minigpt.serve.errors import APIError, BodyLimit, install_error_handlers
from minigpt.serve.metrics import CountRequests, ServerMetrics
from minigpt.serve.replies import Replies, Wakeups
from minigpt.serve.schemas import ChatRequest, CompletionRequest, Sampling
from minigpt.serve.settings import ServeSettings
from minigpt.tokenizer.base import Tokenizer

MAX_STOPS = 4  # OpenAI's limit on `stop` strings


def create_app(model: Transformer, tokenizer: Tokenizer, settings: ServeSettings) -> FastAPI:
    """The server for `model` and `tokenizer`; its engine runs while the app does (lifespan)."""
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

    api = _Api(model, tokenizer, settings, engine, metrics)
    app = FastAPI(title="minigpt", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.metrics, app.state.settings = engine, metrics, settings
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
    ) -> None:
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.engine, self.metrics = engine, metrics
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
        messages = [{"role": m.role, "content": m.content} for m in body.messages]
        prompt = chat_prompt_ids(self.tokenizer, messages)
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        replies = self._start(body, prompt, limit, reply_end_ids(self.tokenizer))
        return await self._respond(request, replies, body, "chat.completion", "/v1/chat/completions")

    async def completions(self, body: CompletionRequest, request: Request) -> Response:
        """POST /v1/completions: continue the prompt, stopping at `<|eos|>` (as `minigpt.cli.generate`)."""
        prompt = self.tokenizer.encode(body.prompt, allow_special=True) or [self.tokenizer.bos_id or 0]
        ends = [self.tokenizer.eos_id] if self.tokenizer.eos_id is not None else []
        replies = self._start(body, prompt, body.max_tokens, ends)
        return await self._respond(request, replies, body, "text_completion", "/v1/completions")

    def _start(self, body: Sampling, prompt: list[int], max_tokens: int | None, ends: list[int]) -> Replies:
        """Check the request against the limits and submit its choices to the engine."""
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
        config = GenerationConfig(
            max_new_tokens=max_tokens or settings.default_max_tokens,
            strategy="greedy" if greedy else "sample",
            temperature=1.0 if greedy else body.temperature,
            top_p=None if body.top_p >= 1.0 else body.top_p,
            stop_tokens=ends,
            stop_strings=stops,
        )
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
            stops=stops,
            stream=body.stream,
            retry_after_s=settings.retry_after_s,
        )

    async def _respond(self, request: Request, replies: Replies, body: Sampling, kind: str, endpoint: str) -> Response:
        """The whole answer as one JSON object, or as a stream of server-sent events."""
        id_ = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        head = {"id": id_, "created": int(time.time()), "model": self.settings.model_name}
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            stream = self._stream(replies, head, kind, include_usage, endpoint)
            return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        texts = [""] * body.n
        reasons: list[str | None] = [None] * body.n
        watcher = asyncio.create_task(_cancel_on_disconnect(request, replies))
        try:
            async for event in replies.events(self.settings.request_timeout_s):
                texts[event.index] += event.text
                reasons[event.index] = event.finish_reason or reasons[event.index]
        finally:
            watcher.cancel()
            replies.cancel()  # a no-op for finished choices; frees the rows of a request that failed
        self._observe(replies, endpoint)
        if kind == "chat.completion":
            choices: list[dict[str, Any]] = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": reason,
                }
                for i, (text, reason) in enumerate(zip(texts, reasons))
            ]
        else:
            choices = [
                {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
                for i, (text, reason) in enumerate(zip(texts, reasons))
            ]
        return JSONResponse({**head, "object": kind, "choices": choices, "usage": replies.usage()})

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
        object_ = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            return f"data: {json.dumps({**head, 'object': object_, 'choices': choices, **extra})}\n\n"

        def choice(index: int, text: str | None, reason: str | None, role: bool = False) -> dict[str, Any]:
            if not chat:
                return {"index": index, "text": text or "", "logprobs": None, "finish_reason": reason}
            delta: dict[str, str] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}

        try:
            if chat:  # OpenAI opens each choice with its role
                yield chunk([choice(i, "", None, role=True) for i in range(len(replies.texts))])
            try:
                async for event in replies.events(self.settings.request_timeout_s):
                    if event.text:
                        yield chunk([choice(event.index, event.text, None)])
                    if event.finish_reason is not None:
                        yield chunk([choice(event.index, None if chat else "", event.finish_reason)])
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


async def _cancel_on_disconnect(request: Request, replies: Replies) -> None:
    """Cancel `replies` when the client of a (non-streaming) request disconnects.

    Its body has been read, so the next ASGI message is `http.disconnect`, whenever the client leaves;
    the task is cancelled once the answer is ready. (A streaming response is cancelled by Starlette.)
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass
    replies.cancel()
