"""`toktts serve`: a real uvicorn on a free loopback port, the bundled voice, real clients (the
official `openai` package, httpx, headless Chromium)."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from toktts.audio import supported_formats  # noqa: E402
from toktts.errors import TokttsError  # noqa: E402
from toktts.inference import TTS  # noqa: E402
from toktts.server import bind_socket, create_app  # noqa: E402

from helpers import tiny_tts  # noqa: E402

SR = 24000
MAX_CHARS = 1500
TEXTS = ["Hello there.", "Good morning to you all.", "One, two, three.", "The cat sat on the mat.",
         "Is it raining?", "Printing is an art.", "Yes.", "We will see them tomorrow at noon."]


@pytest.fixture(scope="module")
def tts() -> TTS:
    return TTS.from_pretrained()


@contextlib.contextmanager
def running(app, wait_ready: bool = True):
    """Serve `app` with uvicorn in a thread on 127.0.0.1:<free port>; yield its base URL."""
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        while wait_ready and httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline, "the model did not become ready"
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def url(tts):
    with running(create_app(tts, model_id="toktts-demo", max_chars=MAX_CHARS)) as url:
        yield url


@pytest.fixture
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def speech(url: str, timeout: float = 60, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", **body}, timeout=timeout)


def pcm_samples(data: bytes) -> np.ndarray:
    assert len(data) % 2 == 0, "16-bit PCM has an even number of bytes"
    return np.frombuffer(data, dtype="<i2")


def assert_openai_error(r: httpx.Response, status: int, param: str | None = None, *words: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if param is not None:
        assert err["param"] == param
    for word in words:
        assert word in err["message"], err["message"]
    return err["message"]


# -- the OpenAI client --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", supported_formats())
def test_openai_client_gets_audio_in_every_format(client, fmt):
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.", response_format=fmt,
                                       extra_body={"seed": 1})
    if fmt == "pcm":
        samples = pcm_samples(audio.content)
        assert 0.3 * SR < len(samples) < 5 * SR and np.abs(samples).max() > 100
        return
    wav, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == SR and wav.ndim == 1
    assert 0.3 < len(wav) / rate < 5 and np.abs(wav).max() > 0.01


def test_default_format_is_openais_mp3(client):
    if "mp3" not in supported_formats():
        pytest.skip("this libsndfile cannot write mp3")
    audio = client.audio.speech.create(model="tts-1", voice="nova", input="Hello there.")
    assert sf.info(io.BytesIO(audio.content)).format == "MP3"


def test_streaming_response_is_chunked_and_equals_the_whole(client, url):
    """pcm and wav stream as they are produced; with a seed, the stream is the same audio as
    a buffered request, and the wav stream (sizes 'unknown') decodes to the same samples."""
    kw = dict(model="tts-1", voice="alloy", input="Good morning to you all.", extra_body={"seed": 7})
    with client.audio.speech.with_streaming_response.create(response_format="pcm", **kw) as r:
        assert r.headers.get("transfer-encoding") == "chunked"
        streamed = b"".join(r.iter_bytes())
    assert streamed == client.audio.speech.create(response_format="pcm", **kw).content
    with client.audio.speech.with_streaming_response.create(response_format="wav", **kw) as r:
        body = b"".join(r.iter_bytes())
    assert body[:4] == b"RIFF" and body[40:44] == b"\xff\xff\xff\xff"
    wav, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == SR and np.array_equal(wav, pcm_samples(streamed))


def test_speed_changes_duration_not_sample_rate(url):
    base = dict(input="Good morning to you all.", seed=3, response_format="flac")
    normal, fast = sf.read(io.BytesIO(speech(url, **base).content)), sf.read(io.BytesIO(speech(url, speed=2.0, **base).content))
    assert fast[1] == normal[1] == SR
    assert len(fast[0]) / len(normal[0]) == pytest.approx(0.5, abs=0.02)


def test_models_health_and_page(client, url):
    models = client.models.list()
    assert [m.id for m in models.data] == ["toktts-demo"] and models.data[0].owned_by == "toktts"
    assert httpx.get(f"{url}/v1/models").json()["object"] == "list"
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ready" and health["sampling_rate"] == SR and "wav" in health["formats"]
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "<audio" in page.text and "<canvas" in page.text
    # self-contained: nothing is loaded from another origin
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, param, words", [
    ({"input": "Hi.", "response_format": "aac"}, "response_format", ["'aac'", "wav", "pcm"]),
    ({"input": "Hi.", "speed": 5}, "speed", ["0.25", "4.0", "5"]),
    ({"input": "Hi.", "speed": 0.1}, "speed", ["0.1"]),
    ({"input": "Hi.", "temperature": -1}, "temperature", ["-1"]),
    ({"input": "Hi.", "top_p": 1.5}, "top_p", ["1.5"]),
    ({"input": "Hi.", "top_k": -3}, "top_k", ["-3"]),
    ({"input": "Hi.", "cfg_scale": 11}, "cfg_scale", ["11"]),
    ({"input": "Hi.", "temperature": 1e-45}, "temperature", ["1e-45", "0.001"]),
    ({"input": "Hi.", "seed": 2**70}, "seed", [str(2**70)]),
    ({"input": "Hi.", "stream_format": "sse"}, "stream_format", ["'sse'"]),
    ({"input": "  ...  "}, "input", ["nothing to say"]),
])
def test_bad_values_are_400_naming_the_field_and_value(url, body, param, words):
    assert_openai_error(speech(url, **body), 400, param, *words)


@pytest.mark.parametrize("body, param, words", [
    ({"input": "Hi.", "speed": "fast"}, "speed", ["'fast'"]),
    ({"input": 42}, "input", ["42"]),
    ({"input": "Hi.", "seed": "x"}, "seed", ["'x'"]),
    ({"input": "Hi.", "temprature": 0.5}, "temprature", ["unknown field", "temperature"]),
    ({"voice": "alloy"}, "input", ["missing"]),
])
def test_wrong_types_are_400_in_openais_shape(url, body, param, words):
    assert_openai_error(speech(url, **body), 400, param, *words)


def test_malformed_json_is_400(url):
    r = httpx.post(f"{url}/v1/audio/speech", content=b"{nope", headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400, None, "not valid JSON")


def test_openai_client_raises_its_own_error_types(client):
    with pytest.raises(openai.BadRequestError, match="speed"):
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=10)


def test_input_over_max_chars_is_413(url):
    assert_openai_error(speech(url, input="a" * (MAX_CHARS + 1)), 413, "input", str(MAX_CHARS + 1), str(MAX_CHARS))


def _raw_request(url: str, head: bytes, body_parts: list[bytes], pause: float = 0.0) -> tuple[int, dict, float]:
    """Send a request by hand (headers, then the body parts `pause` s apart); returns the status,
    the JSON error and the seconds until the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        t0 = time.monotonic()
        sock.sendall(head)
        for part in body_parts:
            time.sleep(pause)
            with contextlib.suppress(OSError):  # the server may have answered and closed already
                sock.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        seconds = time.monotonic() - t0
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        if b" 408 " in head.split(b"\r\n")[0] or b" 413 " in head.split(b"\r\n")[0]:
            assert b"connection: close" in head
            sock.settimeout(5)
            try:  # closed by the server: an orderly end, or a reset when our unread bytes were dropped
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
    status = int(data.split(b" ", 2)[1])
    body = data.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(body) if b"application/json" in head else {}, seconds


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _head(length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{size}\r\n\r\n"
            ).encode()


def test_request_bodies_are_bounded_before_they_are_read(tts):
    with running(create_app(tts, max_chars=100, warmup=False, body_timeout=1.0)) as url:
        # A huge Content-Length is refused at once, whatever follows.
        status, err, seconds = _raw_request(url, _head(10**12), [b'{"input": "hi"'])
        assert status == 413 and "over 16984 bytes" in err["error"]["message"] and seconds < 5
        # A body without a length is counted as it comes: refused once it passes the limit.
        chunk = b"%x\r\n%s\r\n" % (8192, b"a" * 8192)
        status, err, _ = _raw_request(url, _head(None), [b'10\r\n{"input": "aaaaa\r\n'] + [chunk] * 4)
        assert status == 413 and "over 16984 bytes" in err["error"]["message"]
        # A body that announces 200 bytes and sends 20 gets 408 after the body timeout, not a hang,
        # and the connection is closed (its body will never be read).
        status, err, seconds = _raw_request(url, _head(200), [b'{"input": "hello th'])
        assert status == 408 and "did not arrive within 1 s" in err["error"]["message"] and seconds < 5
        # A body that comes in pieces within the time is served.
        parts = [b'{"input": "Hi there.", ', b'"response_format": "pcm"}']
        status, _, _ = _raw_request(url, _head(sum(map(len, parts))), parts, pause=0.3)
        assert status == 200
    # The time limit is on the body only: a streamed answer may go on for longer.
    # (a timeout far shorter than the answer, whatever the machine's speed)
    with running(create_app(tiny_tts(max_seconds=0.5), warmup=False, body_timeout=0.1)) as url:
        t0 = time.monotonic()
        r = speech(url, input="One two three. " * 90, response_format="wav", seed=0)
        assert r.status_code == 200 and time.monotonic() - t0 > 0.1
        assert len(r.content) > 44 + 2 * SR  # the whole of it: several seconds of audio


def test_api_key(tts):
    with running(create_app(tts, api_key="sesame", warmup=False)) as url:
        assert_openai_error(speech(url, input="Hi."), 401, None, "missing API key")
        r = httpx.post(f"{url}/v1/audio/speech", json={"input": "Hi."}, headers={"Authorization": "Bearer nope"})
        assert_openai_error(r, 401, None, "wrong API key")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).models.list()
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="sesame", max_retries=0)
        audio = good.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="wav")
        assert sf.info(io.BytesIO(audio.content)).samplerate == SR
        assert httpx.get(f"{url}/health").status_code == 200  # probes need no key


def test_full_queue_is_429(tts):
    """One request runs, one waits (--max-queue 1): the third is turned away, the two finish."""
    with running(create_app(tts, max_queue=1, warmup=False)) as url:
        def until(key: str, value: int) -> None:
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/health").json()[key] != value:
                assert time.monotonic() < deadline, f"{key} never reached {value}"
                time.sleep(0.002)

        with ThreadPoolExecutor(2) as pool:
            # a long text: its synthesis takes long enough to watch the queue fill
            long = pool.submit(speech, url, input="Printing, in the only sense with which we are concerned.",
                               seed=0, response_format="flac")
            until("running", 1)
            waiting = pool.submit(speech, url, input="Hi.", response_format="flac")
            until("queued", 1)
            r = speech(url, input="Hi.")
            assert_openai_error(r, 429, None, "--max-queue 1")
            assert r.headers["retry-after"]
            assert long.result().status_code == 200 and waiting.result().status_code == 200


def test_503_while_the_model_loads_then_ready(tts):
    loaded = threading.Event()

    def load_when_allowed() -> TTS:  # the real loader, held back so the test sees the loading phase
        assert loaded.wait(60)
        return TTS.from_pretrained()

    with running(create_app(load_when_allowed, warmup=False), wait_ready=False) as url:
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        r = speech(url, input="Hi.")
        assert_openai_error(r, 503, None, "loading")
        assert r.headers["retry-after"]
        loaded.set()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert speech(url, input="Hi.", response_format="wav").status_code == 200


def test_a_model_that_fails_to_load_answers_503_with_the_reason():
    def broken() -> TTS:
        return TTS.from_pretrained("/nonexistent/model")

    with running(create_app(broken, warmup=False), wait_ready=False) as url:
        deadline = time.monotonic() + 30
        while (health := httpx.get(f"{url}/health").json())["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert health["status"] == "failed" and "/nonexistent/model" in health["error"]
        assert_openai_error(speech(url, input="Hi."), 503, None, "failed to load", "/nonexistent/model")


def test_a_voice_that_gives_only_silence_is_a_400_streamed_or_not():
    from helpers import mute_tts

    mute = mute_tts()
    mute.cfg.generate.chunk_chars = 20  # two chunks below, and a pause of silence between them
    with running(create_app(mute, max_chars=200, warmup=False)) as url:
        for text in ("Hello there.", "Hello there. This is a second sentence."):
            for speed in (1.0, 1.5):  # streamed as it is generated, or whole and then stretched
                r = speech(url, input=text, response_format="wav", speed=speed, seed=3)
                assert_openai_error(r, 400, "input", f"only silence for {text!r}", "seed 3")
                assert r.json()["error"]["code"] == "silent_output"
        r = speech(url, input="Hello there.", response_format="wav")
        assert_openai_error(r, 400, "input", "(every take): try another seed")  # no seed asked for


@pytest.fixture(scope="module")
def tiny_url():
    with running(create_app(tiny_tts(max_seconds=0.5), max_chars=200, warmup=False)) as url:
        yield url


def test_voices_are_listed_chosen_loaded_lazily_and_bounded(tts, caplog):
    caplog.set_level(logging.INFO, logger="toktts.server")

    def broken() -> TTS:
        raise TokttsError("model directory 'x' is incomplete")

    voices = {"tiny": lambda: tiny_tts(1, 0.5), "tiny2": lambda: tiny_tts(2, 0.5), "broken": broken}
    with running(create_app(tts, warmup=False, voices=voices, max_voices=1)) as url:
        listed = httpx.get(f"{url}/v1/audio/voices").json()
        assert [v["id"] for v in listed["data"]] == ["demo", "tiny", "tiny2", "broken"]
        assert listed["default"] == "demo" and "alloy" in listed["aliases"]
        assert [v["loaded"] for v in listed["data"]] == [True, False, False, False]  # lazily

        def take(voice) -> bytes:
            r = speech(url, input="Hi there.", voice=voice, seed=5, response_format="pcm")
            assert r.status_code == 200, r.text
            return r.content

        default = take("demo")
        assert take("alloy") == default and take({"id": "nova"}) == default  # OpenAI's names: the default
        assert take("tiny") != default
        assert [v["loaded"] for v in httpx.get(f"{url}/v1/audio/voices").json()["data"]] == [True, True, False, False]
        take("tiny2")  # max_voices=1: tiny goes
        assert [v["loaded"] for v in httpx.get(f"{url}/v1/audio/voices").json()["data"]] == [True, False, True, False]
        assert "voice tiny unloaded" in caplog.text
        assert_openai_error(speech(url, input="Hi.", voice="zzz"), 400, "voice", "'zzz'", "demo, tiny, tiny2")
        assert_openai_error(speech(url, input="Hi.", voice="broken"), 500, "voice", "failed to load", "incomplete")
        assert take("demo") == default  # the others' troubles leave the default voice as it was


_field = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**65),
                   st.floats(allow_nan=False, allow_infinity=False),  # what JSON can carry
                   st.text(max_size=5), st.sampled_from(["wav", "pcm", "mp3", "flac", "opus", "aac", "audio", "sse"]),
                   st.lists(st.integers(), max_size=2))
_body = st.fixed_dictionaries(
    {"input": st.one_of(st.text(max_size=40), st.integers(), st.none(), st.text(min_size=201, max_size=210))},
    optional={k: _field for k in ("model", "voice", "response_format", "speed", "stream_format", "temperature",
                                  "top_k", "top_p", "cfg_scale", "seed", "instructions", "extra")},
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_body)
def test_any_json_body_is_served_or_refused_in_openais_shape(tiny_url, body):
    r = httpx.post(f"{tiny_url}/v1/audio/speech", json=body, timeout=60)
    if r.status_code == 200:
        assert r.content
        return
    assert r.status_code in (400, 413), r.text  # never a 500 for what a client sent
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and "\n" not in err["message"]


# -- concurrency --------------------------------------------------------------------------------


def _first_take_seed(tts: TTS, text: str, start: int) -> int:
    """The first seed from `start` whose first take of `text` needs no retry: a streamed chunk
    is heard as it is generated, so one that runs away is not redone as in the whole file
    (TTS.stream); batching is what this test is about."""
    return next(s for s in range(start, start + 50) if tts(text, seed=s)["retries"] == 0)


def test_16_concurrent_seeded_requests_each_get_their_own_audio(url, tts, caplog):
    """Seeded requests are batched under load, each text with its own seed; each gets exactly
    the audio it gets alone, in streamed (wav, pcm) and whole (flac) formats alike."""
    seeds = [_first_take_seed(tts, text, 10 + i) for i, text in enumerate(TEXTS)]
    jobs = [dict(input=TEXTS[i % 8], seed=seeds[i % 8], response_format=("wav", "pcm", "flac")[i % 3])
            for i in range(16)]

    def fetch(job: dict) -> np.ndarray:
        r = speech(url, **job)
        assert r.status_code == 200, r.text
        return pcm_samples(r.content) if job["response_format"] == "pcm" else sf.read(io.BytesIO(r.content), dtype="int16")[0]

    with caplog.at_level(logging.INFO, logger="toktts.server"), ThreadPoolExecutor(16) as pool:
        together = list(pool.map(fetch, jobs))
    batches = [int(m) for m in re.findall(r"batch=(\d+)", caplog.text)]
    assert max(batches) > 1, f"nothing was batched: {batches}"
    alone = [fetch(job) for job in jobs]
    for job, a, b in zip(jobs, together, alone):
        assert np.array_equal(a, b), f"{job} differs under load"
    # the same text and seed in two formats is the same audio; different texts are not
    assert np.array_equal(together[0], together[8]) and np.array_equal(together[1], together[9])
    by_text = {job["input"]: audio for job, audio in zip(jobs, together)}
    lengths = {len(a) for a in by_text.values()}
    assert len(lengths) >= 6, f"different texts should mostly differ in length: {lengths}"


def test_16_concurrent_unseeded_requests_are_batched_and_stay_apart(url, caplog):
    """Unseeded requests waiting together are synthesized as one batch too; greedy decoding makes
    each result checkable: it must equal that text's greedy audio alone."""
    texts = [TEXTS[i % 8] for i in range(16)]

    def fetch(text: str) -> np.ndarray:
        r = speech(url, input=text, temperature=0, response_format="flac")
        assert r.status_code == 200, r.text
        return sf.read(io.BytesIO(r.content), dtype="int16")[0]

    with caplog.at_level(logging.INFO, logger="toktts.server"), ThreadPoolExecutor(16) as pool:
        together = list(pool.map(fetch, texts))
    batches = [int(m) for m in re.findall(r"batch=(\d+)", caplog.text)]
    assert len(batches) == 16 and max(batches) > 1, f"nothing was batched: {batches}"
    for text, audio in zip(texts[:8], together[:8]):
        alone = fetch(text)
        assert len(audio) == len(alone), f"{text!r}: {len(audio)} samples batched vs {len(alone)} alone"
        assert np.abs(audio.astype(int) - alone).max() <= 64, f"{text!r} differs when batched"


def test_a_client_that_hangs_up_frees_the_model(url, caplog):
    """Hanging up mid-stream stops the generation at the next chunk, instead of the model
    speaking a long text to nobody."""
    val = (resources.files("toktts") / "data" / "ljspeech" / "val.txt").read_text().splitlines()
    long_text = " ".join(line.split("|", 1)[1] for line in val[:8])  # ~1,000 characters, ~50 s of speech
    with caplog.at_level(logging.INFO, logger="toktts.server"):
        with httpx.stream("POST", f"{url}/v1/audio/speech", timeout=60,
                          json={"input": long_text, "response_format": "pcm"}) as r:
            assert r.status_code == 200
            next(r.iter_raw())
        t0 = time.monotonic()
        while (h := httpx.get(f"{url}/health").json())["running"] or h["queued"]:
            # all of it takes ~7 s on 2 cores; a streamed piece comes every ~0.5 s
            assert time.monotonic() - t0 < 3, "the model went on speaking after the client left"
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while " 499 " not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    assert speech(url, input="Hi.", response_format="wav").status_code == 200


# -- the page -----------------------------------------------------------------------------------


def test_page_speaks_in_headless_chromium(url, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        # Playwright's own browser download needs the internet; Debian's chromium does not.
        browser = p.chromium.launch(executable_path=chromium, args=["--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("document.getElementById('model').textContent.startsWith('Model')")
            page.wait_for_function("document.getElementById('voice').options.length >= 1 && "
                                   "document.getElementById('voice').value === 'demo'")
            page.fill("#text", "Hello from the browser. It was the best of times, it was the worst of times.")
            page.fill("#seed", "4")
            page.click("#speak")
            page.wait_for_function(
                "(() => { const a = document.getElementById('audio'); return a.readyState >= 1 && isFinite(a.duration) && a.duration > 0; })()",
                timeout=60_000,
            )
            duration = page.evaluate("document.getElementById('audio').duration")
            assert 1 < duration < 15
            # the wav streamed: its first samples were playing before the last ones arrived
            assert page.evaluate("window.tokttsFirstPlay < window.tokttsDone")
            timing = page.inner_text("#timing")
            assert "all of it after" in timing and "than real time" in timing, timing
            assert page.get_attribute("#download", "download") == "toktts.wav" and page.is_visible("#download")
            inked = page.evaluate("""(() => { const c = document.getElementById('wave');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })()""")
            assert inked > 1000, "the waveform was not drawn"
            # an error clears the earlier take: no player source, no download, the message shown
            page.fill("#text", "  ...  ")
            page.click("#speak")
            page.wait_for_function("document.getElementById('status').className === 'error'")
            assert "nothing to say" in page.inner_text("#status")
            assert page.evaluate("document.getElementById('audio').getAttribute('src')") is None
            assert not page.is_visible("#download") and page.inner_text("#timing") == ""
            page.screenshot(path=str(tmp_path / "page.png"))
            assert not errors, errors
        finally:
            browser.close()
