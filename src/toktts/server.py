"""`toktts serve`: an OpenAI-compatible speech API and a web page, on FastAPI + uvicorn.

    toktts serve                                  # the bundled voice at http://127.0.0.1:8000
    curl -s localhost:8000/v1/audio/speech -H 'Content-Type: application/json' \\
         -d '{"model": "toktts", "input": "Hello there.", "voice": "alloy", "response_format": "wav"}' -o hello.wav

How it holds up under many clients (docs/server.md has the long form):

- One worker thread owns the models: it loads the default voice, warms it up, then makes every
  model call, loading another voice on its first request (at most `max_voices` stay loaded).
  A model with a KV cache is not safe to call from two threads at once, and on CPU one generation
  thread is the fast choice anyway (inference.py), so concurrency inside the model buys nothing.
  Until the model is ready every request gets 503.
- Requests wait in a bounded queue (`max_queue`; beyond it 429). Requests that wait together
  with the same voice, temperature, top_k, top_p and cfg_scale are synthesized as one batch (up to `max_batch`),
  1.4-1.6x the throughput on CPU with 16 clients. Seeds are per text in a batch (`TTS.synthesize` draws each item
  from its own generator), so a seeded request gets the same audio alone or batched.
- `wav` and `pcm` at speed 1 stream as the model produces them (chunked transfer; `wav` with
  a header whose sizes say "unknown", as streaming TTS servers do). Other formats, and speed
  != 1 (the phase vocoder needs the whole signal), are sent whole, with a Content-Length.
- Time-stretching and encoding run on the event loop's thread pool, off the model's thread.
- A body's size is checked by its Content-Length before it is read, and it must arrive within
  `body_timeout` (`BodyGuard`).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from toktts.audio import (
    MEDIA_TYPES, SPEED_RANGE, change_speed, encode, limit, pcm16, supported_formats, wav_stream_header,
)
from toktts.config import BadValue, check_options
from toktts.errors import TokttsError
from toktts.text import Lexicon
from toktts.voices import BUNDLED_VOICE, OPENAI_VOICES, find_voices, parse_voice_arg

try:
    import uvicorn
    from fastapi import APIRouter, Depends, FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from pydantic import BaseModel, ConfigDict
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as e:
    raise TokttsError(f"the server needs FastAPI and uvicorn ({e.name} is missing): pip install 'toktts[server]'") from None

log = logging.getLogger("toktts.server")

# -- errors -------------------------------------------------------------------------------------


class APIError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def _validation_message(err: dict) -> tuple[str, str | None]:
    """One pydantic error -> (a one-line message naming the field and value, the field)."""
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    kind = err.get("type", "")
    if kind == "json_invalid":
        return f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')})", None
    if kind == "missing":
        return f"missing required field {param!r}", param
    if kind == "extra_forbidden":
        known = ", ".join(SpeechRequest.model_fields)
        return f"unknown field {param!r}; the fields are: {known}", param
    if param is None:
        return f"the request body must be a JSON object, got {err.get('input')!r}", None
    return f"invalid {param!r}: {err.get('msg', 'wrong value').lower()}, got {err.get('input')!r}", param


class BodyGuard:
    """ASGI middleware bounding what a request body may cost before the app reads it: a body
    whose Content-Length is over `max_bytes` is refused (413) without reading a byte, one sent
    without a length is counted as it arrives, and the body must have arrived `timeout` seconds
    after the request began (408), so a client that announces much and sends little cannot hold
    a connection. Once the body is whole, reads pass through untimed (a streamed response keeps
    listening for the client hanging up). A refused request's connection is closed."""

    def __init__(self, app, max_bytes: int, timeout: float):
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await self._refuse(scope, receive, send, APIError(400, f"Content-Length {length.decode()!r} "
                                                                         "is not a number of bytes"))
            if int(length) > self.max_bytes:
                return await self._refuse(scope, receive, send, self._too_large(int(length)))
        deadline = asyncio.get_running_loop().time() + self.timeout
        received, whole, refused = 0, False, False

        async def bounded_receive():
            nonlocal received, whole, refused
            if whole:
                return await receive()
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.0))
            except asyncio.TimeoutError:
                refused = True
                # Raised where the app reads the body; FastAPI passes HTTPExceptions on to the
                # app's handler, which answers in OpenAI's shape.
                raise StarletteHTTPException(408, f"the request body did not arrive within {self.timeout:g} s; "
                                                  "send it whole and promptly") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise StarletteHTTPException(413, self._too_large(received).message)
                whole = not message.get("more_body", False)
            return message

        async def closing_send(message):
            if refused and message["type"] == "http.response.start":  # the rest of the body is not read
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, bounded_receive, closing_send)

    def _too_large(self, size: int) -> APIError:
        return APIError(413, f"the request body is over {self.max_bytes} bytes ({size}); send less text",
                        code="body_too_large")

    @staticmethod
    async def _refuse(scope, receive, send, error: APIError) -> None:
        response = error.response()
        response.headers["Connection"] = "close"  # the unread body is not drained
        await response(scope, receive, send)


# -- the model's worker -------------------------------------------------------------------------

_END = object()  # the last event of a job
VOICE_RETRY_SECONDS = 60.0  # a voice that failed to load is tried again after this long


@dataclass(eq=False)
class Job:
    """One request's synthesis, between the event loop that answers it and the model's thread."""

    text: str
    sampling: dict[str, Any]  # temperature, top_k, top_p, cfg_scale, seed (None = the model's default)
    stream: bool  # send chunks as they come (wav and pcm at speed 1)
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)  # audio chunks, then _END or an APIError
    cancelled: bool = False  # set by the event loop when the client has gone
    batch_size: int = 1
    voice: str | None = None  # None: the default voice
    sample_rate: int | None = None  # the voice's, set by the model's thread before any audio

    @property
    def batch_key(self) -> tuple:
        """Jobs with equal keys may share a batch (each keeps its own seed)."""
        s = self.sampling
        return self.voice, s["temperature"], s["top_k"], s["top_p"], s["cfg_scale"]

    def put(self, item: Any) -> None:
        """Called from the model's thread."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)


TTSOrLoader = Any  # a `TTS`, or a function of no arguments that loads one


class Synthesizer:
    """Owns the models: one thread loads the default voice, warms it up, then runs every job,
    batching where it may. Other voices are loaded on their first request, and at most
    `max_voices` of them stay loaded (the least recently used goes first)."""

    def __init__(self, tts_or_loader: TTSOrLoader, max_queue: int = 64, max_batch: int = 8,
                 warmup: bool = True, on_load_error: Callable[[BaseException], None] | None = None,
                 voices: dict[str, TTSOrLoader] | None = None, max_voices: int = 2):
        # A TTS is callable too; what tells them apart is the batch method.
        self.tts = tts_or_loader if hasattr(tts_or_loader, "synthesize") else None
        self._loader = None if self.tts is not None else tts_or_loader
        self.voices = dict(voices or {})  # the other voices: name -> TTS or loader
        self.max_voices = max_voices
        self._loaded: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._failed: dict[str, tuple[float, str]] = {}  # name -> (when, why) of a failed load
        self.max_queue, self.max_batch, self.warmup = max_queue, max_batch, warmup
        self.on_load_error = on_load_error
        self.state = "loading"  # -> "ready" | "failed"
        self.error: str | None = None
        self.running = 0
        self._jobs: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="toktts-model", daemon=True)

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stopping = True
            waiting, self._jobs = list(self._jobs), collections.deque()
            self._cv.notify_all()
        for job in waiting:
            job.put(APIError(503, "the server is shutting down; retry elsewhere", type="server_error"))
        self._thread.join(timeout)

    def check_ready(self) -> None:
        if self.state == "loading":
            raise APIError(503, "the model is still loading; retry in a few seconds", type="server_error",
                           code="model_loading", retry_after=2)
        if self.state == "failed":
            raise APIError(503, f"the model failed to load: {self.error}", type="server_error", code="model_failed")

    def submit(self, job: Job) -> None:
        self.check_ready()
        with self._cv:
            if len(self._jobs) >= self.max_queue:
                raise APIError(429, f"the server is busy: {len(self._jobs)} requests are already waiting "
                               f"(--max-queue {self.max_queue}); retry shortly", type="rate_limit_error",
                               code="queue_full", retry_after=1)
            self._jobs.append(job)
            self._cv.notify()

    def _run(self) -> None:
        try:
            t0 = time.perf_counter()
            if self.tts is None:
                self.tts = self._loader()
            t1 = time.perf_counter()
            if self.warmup:
                self._warm_up()
            log.info("model ready on %s (load %.1f s, warm-up %.1f s)", getattr(self.tts, "device", "?"),
                     t1 - t0, time.perf_counter() - t1)
        except BaseException as e:  # any failure must show in /health, not vanish with the thread
            self.error = str(e) if isinstance(e, TokttsError) else f"{type(e).__name__}: {e}"
            self.state = "failed"
            log.error("the model failed to load: %s", self.error)
            if self.on_load_error:
                self.on_load_error(e)
            return
        self.state = "ready"
        while (batch := self._next_batch()) is not None:
            try:
                self._run_batch(batch)
            finally:
                self.running = 0

    def _warm_up(self) -> None:
        """First calls allocate caches, pick kernels and import the phase vocoder; pay it before
        the first client does."""
        for _ in self.tts.stream("Hello.", seed=0):
            pass
        audio = self.tts.synthesize(["Hello.", "Hi there."], seed=0)[0]["audio"]
        for fmt in supported_formats():
            encode(change_speed(audio, 1.5), self.tts.sampling_rate, fmt)

    def _next_batch(self) -> list[Job] | None:
        """The oldest waiting job, with the compatible jobs waiting behind it (oldest first).
        Jobs whose clients have hung up are dropped here."""
        with self._cv:
            while True:
                while not self._jobs and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return None
                self._jobs = collections.deque(j for j in self._jobs if not j.cancelled)
                if self._jobs:
                    break
            batch = [self._jobs.popleft()]
            key = batch[0].batch_key
            for job in list(self._jobs):
                if len(batch) >= self.max_batch:
                    break
                if job.batch_key == key:
                    self._jobs.remove(job)
                    batch.append(job)
            self.running = len(batch)
            return batch

    @property
    def loaded_voices(self) -> list[str]:
        return list(self._loaded.copy())  # (read from the event loop while the model's thread may change it)

    def _voice(self, name: str | None) -> Any:
        """The TTS of voice `name` (None: the default), loading it if it is not loaded. A voice
        that failed to load is not tried again for a minute (each try holds up every request)."""
        if name is None:
            return self.tts
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        failed = self._failed.get(name)
        if failed and time.monotonic() - failed[0] < VOICE_RETRY_SECONDS:
            raise TokttsError(failed[1])
        source = self.voices[name]
        t0 = time.perf_counter()
        try:
            tts = source if hasattr(source, "synthesize") else source()
        except Exception as e:
            self._failed[name] = (time.monotonic(), str(e) if isinstance(e, TokttsError) else f"{type(e).__name__}: {e}")
            raise TokttsError(self._failed[name][1]) from None
        log.info("voice %s loaded (%.1f s)", name, time.perf_counter() - t0)
        self._loaded[name] = tts
        while len(self._loaded) > self.max_voices:
            gone, _ = self._loaded.popitem(last=False)
            log.info("voice %s unloaded (--max-voices %d)", gone, self.max_voices)
        return tts

    def _run_batch(self, jobs: list[Job]) -> None:
        jobs = [j for j in jobs if not j.cancelled]
        if not jobs:
            return
        for job in jobs:
            job.batch_size = len(jobs)
        try:
            tts = self._voice(jobs[0].voice)
            for job in jobs:
                job.sample_rate = tts.sampling_rate
        except Exception as e:
            reason = str(e) if isinstance(e, TokttsError) else f"{type(e).__name__}: {e}"
            log.error("voice %s failed to load: %s", jobs[0].voice, reason)
            for job in jobs:
                job.put(APIError(500, f"voice {job.voice!r} failed to load: {reason}", type="server_error",
                                 param="voice", code="voice_failed"))
            return
        try:
            if len(jobs) == 1 and jobs[0].stream:
                job = jobs[0]
                # closing: a client that hangs up ends the generation where it is
                stream = tts.stream(job.text, should_stop=lambda: job.cancelled, **job.sampling)
                held: list[np.ndarray] | None = []  # silence (the pauses between chunks) before the first voice
                with contextlib.closing(iter(stream)) as chunks:
                    for chunk in chunks:
                        if job.cancelled:  # the client hung up: stop generating
                            return
                        if held is not None and not chunk.any():
                            held.append(chunk)  # not sent yet: all of it may be silence, an error
                            continue
                        for piece in held or []:
                            job.put(piece)
                        held = None
                        job.put(chunk)
                if job.cancelled:  # (a hang-up may also have ended the stream between steps)
                    return
                if held is not None:  # nothing but silence: an error, while the status can still say so
                    outcome = _voiced_or_error(stream.chunks, job)
                    if outcome is not _END:
                        job.put(outcome)
                        return
                    for piece in held:  # zeros the voice did give
                        job.put(piece)
                job.put(_END)
            else:
                sampling = {**jobs[0].sampling, "seed": [j.sampling["seed"] for j in jobs]}
                results = tts.synthesize([j.text for j in jobs], **sampling)
                for job, result in zip(jobs, results):
                    outcome = _voiced_or_error(result["chunks"], job)
                    if outcome is _END:
                        job.put(result["audio"])
                    job.put(outcome)
        except TokttsError as e:
            if len(jobs) > 1:  # find whose text it was, so that only that request fails
                for job in jobs:
                    self._run_batch([job])
            else:  # a BadValue names its field (cfg_scale for a voice without guidance)
                jobs[0].put(APIError(400, str(e), param=getattr(e, "name", "input")))
        except Exception:  # a bug must answer 500, not leave clients waiting
            log.exception("synthesis failed")
            for job in jobs:
                job.put(APIError(500, "synthesis failed; the server's log has the details", type="server_error"))


def _voiced_or_error(chunks: list[dict], job: Job) -> object:
    """_END for a job whose text got some voice; the 400 to answer when every take was silent."""
    from toktts.inference import require_voiced

    try:
        require_voiced(chunks, job.text, job.sampling.get("seed"))
    except TokttsError as e:
        return APIError(400, str(e), param="input", code="silent_output")
    return _END


# -- the HTTP API -------------------------------------------------------------------------------


class SpeechRequest(BaseModel):
    """OpenAI's `POST /v1/audio/speech` body, plus toktts's sampling settings."""

    model_config = ConfigDict(extra="forbid")

    input: str
    model: str = "toktts"  # any name: the server has one model
    # A voice's name or {"id": name} (GET /v1/audio/voices lists them); OpenAI's names ("alloy",
    # "nova", ...) choose the default voice, so clients written for OpenAI work unchanged.
    voice: str | dict[str, Any] = "alloy"
    instructions: str | None = None  # accepted and ignored: the model takes no style prompt
    response_format: str | None = None  # default mp3 (OpenAI's), wav where mp3 is not available
    speed: float = 1.0
    stream_format: str | None = None  # "audio" only (raw bytes); OpenAI's "sse" events are not offered
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float | None = None
    seed: int | None = None


def _check(req: SpeechRequest, formats: list[str], max_chars: int) -> str:
    """Field checks that need no model; returns the response format. Raises APIError."""
    fmt = req.response_format or ("mp3" if "mp3" in formats else "wav")
    if fmt not in formats:
        raise APIError(400, f"response_format {fmt!r} is not supported here; use one of: {', '.join(formats)}",
                       param="response_format", code="unsupported_format")
    lo, hi = SPEED_RANGE
    if not lo <= req.speed <= hi:  # written so that NaN fails too
        raise APIError(400, f"speed must be between {lo} and {hi}, got {req.speed}", param="speed")
    if req.stream_format not in (None, "audio"):
        raise APIError(400, f"stream_format {req.stream_format!r} is not supported; use 'audio' (or leave it out)",
                       param="stream_format")
    try:
        check_options(dict(temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, cfg_scale=req.cfg_scale,
                           seed=req.seed))
    except BadValue as e:
        raise APIError(400, str(e), param=e.name) from None
    if len(req.input) > max_chars:
        raise APIError(413, f"input is {len(req.input)} characters; this server takes at most {max_chars} "
                       "(--max-chars): split the text", param="input", code="input_too_long")
    return fmt


def create_app(
    tts_or_loader: TTSOrLoader,
    *,
    model_id: str = "toktts",
    api_key: str | None = None,
    max_chars: int = 4096,
    max_queue: int = 64,
    max_batch: int = 8,
    warmup: bool = True,
    on_load_error: Callable[[BaseException], None] | None = None,
    body_timeout: float = 10.0,
    voice_name: str = BUNDLED_VOICE,
    voices: dict[str, TTSOrLoader] | None = None,
    max_voices: int = 2,
) -> FastAPI:
    """The FastAPI app. `tts_or_loader` is the default voice (named `voice_name`): a `TTS` or a
    function returning one; a loader runs on the model's thread at startup while the app already
    answers (503 until it is ready). `voices` are the other voices (name -> TTS or loader),
    loaded on first use, at most `max_voices` at a time."""
    synth = Synthesizer(tts_or_loader, max_queue=max_queue, max_batch=max_batch, warmup=warmup,
                        on_load_error=on_load_error, voices=voices, max_voices=max_voices)
    voice_names = [voice_name, *(v for v in synth.voices if v != voice_name)]

    def choose_voice(voice: str | dict[str, Any]) -> str | None:
        """The request's voice -> None (the default) or another voice's name; 400 if unknown."""
        name = voice.get("id") if isinstance(voice, dict) else voice
        if name == voice_name or name in OPENAI_VOICES:
            return None
        if isinstance(name, str) and name in synth.voices:
            return name
        raise APIError(400, f"unknown voice {name!r}; this server has {', '.join(voice_names)} (and OpenAI's "
                       f"names, which mean {voice_name}): GET /v1/audio/voices", param="voice",
                       code="voice_not_found")
    formats = supported_formats()
    created = int(time.time())
    page = (resources.files("toktts") / "web" / "index.html").read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        synth.start()
        yield
        await run_in_threadpool(synth.stop)

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and this server must
    # work offline. The schema is at /openapi.json.
    app = FastAPI(title="toktts", summary="OpenAI-compatible text-to-speech", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.synth = synth
    # A JSON string spends at most 6 bytes per character (\uXXXX); the other fields are short.
    app.add_middleware(BodyGuard, max_bytes=6 * max_chars + 16384, timeout=body_timeout)

    async def require_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization")
        if not given:
            raise APIError(401, "missing API key: send the header `Authorization: Bearer KEY`",
                           code="invalid_api_key")
        scheme, _, token = given.partition(" ")
        # compare_digest: the time taken does not tell an attacker how much of the key matched
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "wrong API key (give the one the server was started with, as "
                           "`Authorization: Bearer KEY`)", code="invalid_api_key")

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        if request.url.path.startswith("/v1/"):
            log.info("%s %s %d %s", request.method, request.url.path, exc.status, exc.message)
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI answers wrong types with 400 and one message; FastAPI's default is 422 and a list.
        message, param = _validation_message(exc.errors()[0])
        return await _api_error(request, APIError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "another method")
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        elif exc.status_code == 404:
            message = f"no such path {request.url.path}; the API is under /v1 (schema: /openapi.json)"
        else:
            message = str(exc.detail)
        return APIError(exc.status_code, message).response()

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    @v1.get("/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [_model_card(model_id, created)]}

    @v1.get("/models/{name}")
    async def get_model(name: str) -> dict:
        if name != model_id:
            raise APIError(404, f"model {name!r} not found; this server has {model_id!r}", param="model",
                           code="model_not_found")
        return _model_card(model_id, created)

    @v1.post("/audio/speech")
    async def speech(req: SpeechRequest, request: Request) -> Response:
        t0 = time.perf_counter()
        fmt = _check(req, formats, max_chars)
        voice = choose_voice(req.voice)
        synth.check_ready()
        tts = synth.tts
        if voice is None and req.cfg_scale not in (None, 1.0) and tts.model.null_memory is None:
            raise APIError(400, f"cfg_scale {req.cfg_scale} needs a model trained with text dropout; this one "
                           "was not: leave cfg_scale out", param="cfg_scale")
        try:
            tts.prepare_text(req.input)  # "nothing to say" is a 400 now, not a failed batch later
        except TokttsError as e:
            raise APIError(400, str(e), param="input") from None
        sampling = dict(temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, cfg_scale=req.cfg_scale,
                        seed=req.seed)
        job = Job(req.input, sampling, stream=fmt in ("wav", "pcm") and req.speed == 1.0,
                  loop=asyncio.get_running_loop(), voice=voice)
        synth.submit(job)
        info = dict(chars=len(req.input), fmt=fmt, t0=t0)
        first = await _first_event(job, request)  # errors before any audio still get a proper status
        sr = job.sample_rate or tts.sampling_rate  # the chosen voice's
        if first is None:
            _log_request(499, info, 0.0, job.batch_size)
            return Response(status_code=499)  # nobody is listening
        if isinstance(first, APIError):
            raise first
        if job.stream:
            headers = {"X-Sample-Rate": str(sr)}
            return StreamingResponse(_stream_body(job, first, sr, fmt, info), media_type=MEDIA_TYPES[fmt],
                                     headers=headers)
        await job.events.get()  # _END
        try:
            # (synthesis already limited its peaks; a time stretch can raise them again)
            audio = first if req.speed == 1.0 else await run_in_threadpool(lambda: limit(change_speed(first, req.speed)))
            data = await run_in_threadpool(encode, audio, sr, fmt)
        except Exception:  # an encoder failure still answers in OpenAI's error shape
            log.exception("encoding %s failed", fmt)
            raise APIError(500, f"encoding the audio as {fmt} failed; the server's log has the details",
                           type="server_error") from None
        seconds = len(audio) / sr
        _log_request(200, info, seconds, job.batch_size)
        return Response(data, media_type=MEDIA_TYPES[fmt],
                        headers={"X-Sample-Rate": str(sr), "X-Audio-Seconds": f"{seconds:.3f}"})

    @v1.get("/audio/voices")
    async def list_voices() -> dict:
        loaded = set(synth.loaded_voices)
        data = [{"id": name, "object": "voice", "default": name == voice_name,
                 "loaded": name == voice_name and synth.state == "ready" or name in loaded} for name in voice_names]
        return {"object": "list", "data": data, "default": voice_name, "aliases": list(OPENAI_VOICES)}

    app.include_router(v1)

    @app.get("/health")
    async def health() -> JSONResponse:
        body: dict[str, Any] = {"status": synth.state, "model": model_id, "voices": voice_names, "queued": synth.queued,
                                "running": synth.running, "max_queue": max_queue, "formats": formats,
                                "needs_api_key": api_key is not None}
        if synth.state == "ready":
            g = synth.tts.cfg.generate
            body |= {"sampling_rate": synth.tts.sampling_rate, "max_chars": max_chars,
                     "defaults": {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p,
                                  "cfg_scale": g.cfg_scale}}
        if synth.error:
            body["error"] = synth.error
        return JSONResponse(body, status_code=200 if synth.state == "ready" else 503)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app


def _model_card(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "toktts"}


async def _first_event(job: Job, request: Request, poll: float = 0.25) -> Any:
    """The job's first event, or None when the client hangs up first: the job is then cancelled,
    so that the model does not spend its time on audio nobody will hear."""
    get = asyncio.ensure_future(job.events.get())
    try:
        while True:
            done, _ = await asyncio.wait({get}, timeout=poll)
            if done:
                return get.result()
            if await request.is_disconnected():
                job.cancelled = True
                return None
    finally:
        if not get.done():
            get.cancel()
            job.cancelled = True


async def _stream_body(job: Job, first: np.ndarray, sample_rate: int, fmt: str, info: dict):
    """The chunked body of a streamed response: [WAV header,] PCM as the model produces it."""
    samples, item, t_first = 0, first, time.perf_counter()
    try:
        if fmt == "wav":
            yield wav_stream_header(sample_rate)
        while item is not _END:
            if isinstance(item, APIError):
                # Headers are gone: all that is left is to break the connection, so that the
                # client sees a truncated body instead of a short file that looks complete.
                raise RuntimeError(f"synthesis failed mid-stream: {item.message}")
            samples += len(item)
            yield pcm16(item)
            item = await job.events.get()
    finally:
        if item is not _END:
            job.cancelled = True  # the client went away (or we failed): free the model
        status = 200 if item is _END else 499  # nginx's "client closed request"
        _log_request(status, info, samples / sample_rate, job.batch_size, first_byte=t_first - info["t0"])


def _log_request(status: int, info: dict, seconds: float, batch: int, first_byte: float | None = None) -> None:
    elapsed = time.perf_counter() - info["t0"]
    ttfb = f" first_byte={first_byte:.3f}s" if first_byte is not None else ""
    log.info("POST /v1/audio/speech %d chars=%d audio=%.2fs time=%.3fs%s format=%s batch=%d",
             status, info["chars"], seconds, elapsed, ttfb, info["fmt"], batch)


# -- the command ----------------------------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so that a busy port is one clear error (and port 0 works)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise TokttsError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") from None
    return sock


def serve(args) -> None:
    """`toktts serve`: bind, start answering (503 while the model loads), load, warm up, serve."""
    from toktts.devices import check_threads
    from toktts.inference import TTS

    for name, low in (("max_chars", 1), ("max_queue", 1), ("max_batch", 1), ("max_voices", 1)):
        if getattr(args, name) < low:
            raise TokttsError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    check_threads(args.threads, "--threads")
    if not 0 <= args.port <= 65535:
        raise TokttsError(f"--port must be in 0..65535, got {args.port}")
    lexicon = Lexicon.from_file(args.lexicon) if args.lexicon else None  # a bad file fails before binding
    api_key = args.api_key or os.environ.get("TOKTTS_API_KEY") or None
    default = os.path.basename(os.path.normpath(args.model)) if args.model else BUNDLED_VOICE
    model_id = "toktts-" + default
    given = dict(parse_voice_arg(v) for v in args.voice)  # NAME=DIR, checked before binding

    def loader(path: str | None) -> Callable[[], TTS]:
        return lambda: TTS.from_pretrained(path, device=args.device, threads=args.threads,
                                           backend=args.backend).use_lexicon(lexicon)

    others = {name: loader(str(path)) for name, path in find_voices(given).items() if name != default}
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if host not in ("127.0.0.1", "::1") and api_key is None:
        log.warning("listening on %s without --api-key: anyone who can reach this port can use it", host)

    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(e: BaseException) -> None:
        failure.append(e)
        server.should_exit = True  # a server that can never answer should not pretend to run

    app = create_app(
        loader(args.model), model_id=model_id, api_key=api_key, max_chars=args.max_chars,
        max_queue=args.max_queue, max_batch=args.max_batch, on_load_error=on_load_error,
        voice_name=default, voices=others, max_voices=args.max_voices,
    )
    url_host = f"[{host}]" if ":" in host else host
    log.info("serving http://%s:%d (page at /, API at /v1/audio/speech); voices: %s (default %s); "
             "loading the model ...", url_host, port, ", ".join([default, *others]), default)
    # log_config=None: uvicorn logs through ours; access_log off: the app logs each speech request.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=10))
    server.run(sockets=[sock])
    if failure:
        e = failure[0]
        raise TokttsError(str(e) if isinstance(e, TokttsError) else f"the model failed to load: {e}")
