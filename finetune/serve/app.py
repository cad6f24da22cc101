"""OpenAI-compatible routes: /v1/models, /v1/completions, /v1/chat/completions (with server-sent events).

Requests are checked by pydantic models shaped like OpenAI's; anything wrong with a request (bad JSON, a
field out of range, an unknown model, a prompt that does not fit the context, a feature this server does
not have) is answered with OpenAI's error JSON and status 400, so clients raise their usual
``BadRequestError`` and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any, AsyncIterator, Literal, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from finetune.serve.batcher import Batcher, Done, Failed, Job
from finetune.serve.engine import Engine, PromptError
from finetune.serve.rows import RowSpec

# ---------------------------------------------------------------- request models


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """The fields completions and chat share; unknown fields are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: Union[str, list[str], None] = Field(None)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: Any = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for a field asking for something this server does not do; None when all is served."""
        checks = [
            ("n", self.n != 1, "n must be 1: send one request per completion"),
            ("presence_penalty", self.presence_penalty != 0, "presence_penalty is not supported; leave it 0"),
            ("frequency_penalty", self.frequency_penalty != 0, "frequency_penalty is not supported; leave it 0"),
            ("logprobs", self.logprobs not in (None, False), "logprobs are not supported"),
            ("logit_bias", bool(self.logit_bias), "logit_bias is not supported"),
        ]
        return next(((param, msg) for param, bad, msg in checks if bad), None)

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or not all(stops):
            raise PromptError("stop takes up to 4 non-empty strings", "stop")
        return tuple(stops)


class CompletionRequest(Sampling):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    def prompts(self) -> list[str | list[int]]:
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]
        if not self.prompt:
            raise PromptError("prompt is an empty list", "prompt")
        return list(self.prompt)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart], None] = None

    def plain(self) -> dict[str, str]:
        """The message as ft's templates take it: developer is system, text parts joined."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


# ---------------------------------------------------------------- errors


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
    if first.get("type") == "json_invalid":
        return error(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    return error(400, f"{param}: {first['msg']}" if param else first["msg"], param)


# ---------------------------------------------------------------- app


def create_app(engine: Engine, max_batch: int = 16, window_s: float = 0.01, default_max_tokens: int = 256) -> FastAPI:
    """The FastAPI app serving ``engine``; its batcher lives as long as the app (lifespan)."""
    batcher = Batcher(engine.run, max_batch=max_batch, window_s=window_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = batcher.start()
        try:
            yield
        finally:
            batcher.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title=f"ft serve: {engine.name}", lifespan=lifespan)
    app.state.batcher = batcher
    app.add_exception_handler(RequestValidationError, _invalid)
    created = int(time.time())

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(engine.name, created)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> Any:
        if model_id != engine.name:
            return error(404, f"The model `{model_id}` does not exist; this server serves `{engine.name}`", "model")
        return _model_card(engine.name, created)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Any:
        try:
            _check(req, engine)
            if req.echo or (req.best_of or 1) > 1 or req.suffix:
                raise PromptError("echo, best_of and suffix are not supported", "echo")
            prompts = req.prompts()
            if req.stream and len(prompts) > 1:
                raise PromptError("stream takes one prompt; send one request per prompt", "prompt")
            jobs = []
            for prompt in prompts:
                ids = engine.completion_ids(prompt)
                spec = _spec(req, engine.room(ids, req.max_tokens, default_max_tokens, "max_tokens"), strip=False)
                jobs.append(Job(ids, spec))
        except PromptError as exc:
            return error(400, str(exc), exc.param, exc.code)
        for job in jobs:
            batcher.submit(job)
        reply = _Reply(engine.name, "cmpl", "text_completion", chat=False)
        if req.stream:
            return _sse(reply.stream(jobs[0], _usage_wanted(req)))
        return await reply.whole(jobs)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> Any:
        try:
            _check(req, engine)
            ids = engine.chat_ids([m.plain() for m in req.messages])
            asked = req.max_completion_tokens or req.max_tokens
            spec = _spec(req, engine.room(ids, asked, default_max_tokens, "max_tokens"), strip=True)
        except PromptError as exc:
            return error(400, str(exc), exc.param, exc.code)
        job = batcher.submit(Job(ids, spec))
        reply = _Reply(engine.name, "chatcmpl", "chat.completion", chat=True)
        if req.stream:
            return _sse(reply.stream(job, _usage_wanted(req)))
        return await reply.whole([job])

    return app


def _check(req: Sampling, engine: Engine) -> None:
    if req.model != engine.name:
        raise PromptError(
            f"The model `{req.model}` does not exist; this server serves `{engine.name}`", "model", "model_not_found"
        )
    problem = req.unsupported()
    if problem is not None:
        raise PromptError(problem[1], problem[0], "unsupported_parameter")


def _spec(req: Sampling, max_tokens: int, strip: bool) -> RowSpec:
    return RowSpec(max_tokens, req.temperature, req.top_p, req.stops(), req.seed, strip=strip, stream=req.stream)


def _usage_wanted(req: Sampling) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


def _model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "ft"}


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class _Reply:
    """OpenAI's response shapes for one request: a whole answer, or chunks as server-sent events."""

    def __init__(self, model: str, prefix: str, obj: str, chat: bool) -> None:
        self.model, self.obj, self.chat = model, obj, chat
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    async def whole(self, jobs: list[Job]) -> Any:
        try:
            outcomes = [await job.outcome() for job in jobs]
        finally:
            for job in jobs:
                job.cancelled = True  # a client that left stops its rows; finished rows ignore it
        failed = next((o for o in outcomes if isinstance(o, Failed)), None)
        if failed is not None:
            return error(500, failed.message)
        done = [o for o in outcomes if isinstance(o, Done)]
        choices = [self._choice(k, o.text, o.finish_reason) for k, o in enumerate(done)]
        return {**self._head(self.obj), "choices": choices, "usage": _usage(done)}

    def _choice(self, index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
        if self.chat:
            return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}

    def _chunk(self, delta: dict[str, Any] | str, finish_reason: str | None) -> str:
        if self.chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return _event({**self._head("chat.completion.chunk"), "choices": [choice]})
        choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish_reason}
        return _event({**self._head("text_completion"), "choices": [choice]})

    async def stream(self, job: Job, include_usage: bool) -> AsyncIterator[str]:
        try:
            if self.chat:
                yield self._chunk({"role": "assistant", "content": ""}, None)
            while True:
                event = await job.events.get()
                if isinstance(event, str):
                    yield self._chunk({"content": event} if self.chat else event, None)
                elif isinstance(event, Failed):
                    yield _event({"error": {"message": event.message, "type": "server_error", "param": None}})
                    break
                else:
                    yield self._chunk({} if self.chat else "", event.finish_reason)
                    if include_usage:
                        obj = "chat.completion.chunk" if self.chat else "text_completion"
                        yield _event({**self._head(obj), "choices": [], "usage": _usage([event])})
                    break
            yield "data: [DONE]\n\n"
        finally:
            job.cancelled = True  # the client left (or the answer is complete): its row stops at the next step


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _usage(done: list[Done]) -> dict[str, int]:
    prompt = sum(d.prompt_tokens for d in done)
    completion = sum(d.completion_tokens for d in done)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
