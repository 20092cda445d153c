"""Probe toktts's boundaries as a hostile but realistic user would (issue 14): bad values, bad
files and paths, oversized and slow HTTP bodies. Every case must end in a clear one-line error
(CLI exit 2, TokttsError, a 4xx in OpenAI's shape) or in correct output: no traceback, no 500,
no hang, nothing half-written.

    python benchmarks/probe_boundaries.py          # prints one line per case and a summary
    python benchmarks/probe_boundaries.py load     # only the load cases
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TMP = Path(tempfile.mkdtemp(prefix="toktts-probe-"))
results: list[tuple[str, str, bool]] = []


def record(kind: str, case: str, outcome: str, ok: bool) -> None:
    results.append((f"{kind}: {case}", outcome, ok))
    print(f"{'ok  ' if ok else 'FAIL'} {kind}: {case} -> {outcome}", flush=True)


def cli(*args: str, stdin: bytes | None = None, timeout: float = 120, expect_ok: bool = False) -> None:
    try:
        p = subprocess.run([sys.executable, "-m", "toktts.cli", *args], input=stdin, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        record("cli", " ".join(args)[:80], "hang", False)
        return
    err = p.stderr.decode(errors="replace")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    clean = "Traceback" not in err
    if expect_ok:
        ok = p.returncode == 0 and clean
    else:
        ok = p.returncode == 2 and clean and len(errors) == 1
    record("cli", " ".join(args)[:80], f"rc={p.returncode} {errors[0][:90] if errors else err.strip()[-90:]}", ok)


def api(case: str, fn) -> None:
    from toktts.errors import TokttsError

    try:
        fn()
        record("api", case, "returned", False)
    except TokttsError as e:
        record("api", case, f"TokttsError: {str(e)[:90]}", "\n" not in str(e))
    except Exception as e:  # noqa: BLE001 - the probe reports whatever escapes
        record("api", case, f"{type(e).__name__}: {str(e)[:90]}", False)


def main() -> None:
    out = TMP / "a.wav"
    # -- values at the CLI
    for extra in (["--temperature", "nan"], ["--temperature", "inf"], ["--temperature", "1e-45"],
                  ["--seed", str(2**70)], ["--top-k", "-1"], ["--top-p", "0"], ["--cfg-scale", "-1"],
                  ["--retries", "-1"], ["--best-of", "0"], ["--speed", "0"], ["--volume", "nan"],
                  ["--device", "toaster"], ["--device", "cuda"], ["--threads", "0"]):
        cli("say", "Hi.", "-o", str(out), *extra)
    for setting in ("train.grad_accum=0", "train.lr=0", "train.max_steps=-5", "model.enc_heads=3",
                    "train.report_to=bogus", "train.batch_frames=0", "generate.max_seconds=nan", "data.val_size=-1"):
        cli("train", "--config", "configs/demo.yaml", "--set", setting)
    # -- input that is not what it claims
    (TMP / "latin1.txt").write_bytes(b"caf\xe9\n")
    (TMP / "bad.yaml").write_bytes(b"train:\n  lr: 0.1 # caf\xe9\n")
    cli("say", "--text-file", str(TMP / "latin1.txt"), "-o", str(out))
    cli("say", "-", "-o", str(out), stdin=b"caf\xe9 au lait")
    cli("train", "--config", str(TMP / "bad.yaml"))
    broken = TMP / "model"
    broken.mkdir()
    from toktts.voices import bundled_voice_dir

    for name in ("model.safetensors", "codec.safetensors"):
        (broken / name).write_bytes((bundled_voice_dir() / name).read_bytes())
    meta = json.loads((bundled_voice_dir() / "config.json").read_text())
    del meta["model"]
    (broken / "config.json").write_text(json.dumps(meta))
    cli("say", "Hi.", "--model", str(broken), "-o", str(out))
    cli("say", "<speak>unclosed", "-o", str(out))
    # -- output paths
    cli("say", "Hi.", "-o", "")
    cli("say", "Hi.", "-o", str(TMP / "x.xyz"))
    cli("say", "Hi.", "-o", str(TMP / "x.mp3"), expect_ok=True)
    cli("say", "Hi.", "-o", str(TMP))
    link = TMP / "null.wav"
    link.symlink_to("/dev/null")
    cli("say", "Hi.", "-o", str(link), expect_ok=True)
    record("path", "-o symlink to /dev/null stays a link to the device", str(link.is_symlink()), link.is_symlink())
    fifo = TMP / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(len(open(fifo, "rb").read())), daemon=True)
    reader.start()
    cli("say", "Hi.", "-o", str(fifo), "--format", "wav", expect_ok=True)
    reader.join(30)
    record("path", "-o FIFO written through", f"{got} bytes read, still a FIFO: {fifo.is_fifo()}",
           bool(got and got[0] > 44 and fifo.is_fifo()))
    left = [p.name for p in TMP.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    record("path", "temporary files left", str(left), not left)
    # -- the Python API
    from toktts import TTS, text_to_speech_pipeline

    tts = TTS.from_pretrained()
    for kwargs in (dict(temperature="x"), dict(top_k=1.5), dict(max_seconds=-1), dict(max_seconds=math.nan),
                   dict(seed=-1), dict(verify="yes"), dict(beams=2)):
        api(f"tts('Hi.', **{kwargs})", lambda kwargs=kwargs: tts("Hi.", **kwargs))
    pipe = text_to_speech_pipeline()
    api("pipe(forward_params='greedy')", lambda: pipe("Hi.", forward_params="greedy"))
    api("save_pretrained('/proc/x')", lambda: tts.save_pretrained("/proc/x"))
    api("tts(42)", lambda: tts(42))
    # -- cost grows with the input: a word of 3,000 and of 6,000 characters
    times = []
    for n in (3000, 6000):
        t0 = time.perf_counter()
        tts("x" * n, max_seconds=0.5, retries=0, seed=0)
        times.append(time.perf_counter() - t0)
    record("cost", "one word of 3,000 / 6,000 characters", f"{times[0]:.1f} s / {times[1]:.1f} s",
           times[1] < 3 * times[0])
    # -- the server
    import httpx

    server, url = start_server(8711, "--max-chars", "1000")
    try:
        for body in ({"input": "Hi.", "temperature": 1e-45}, {"input": "Hi.", "seed": 2**70},
                     {"input": "Hi.", "top_k": 1.5}, {"input": "Hi.", "voice": "zzz"}, {"input": "<speak>x"},
                     {"input": "Hi.", "speed": 0}, {"input": "x" * 1001}, {"input": 5}, ["Hi."]):
            r = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=60)
            shape = r.headers.get("content-type", "").startswith("application/json") and "error" in r.json()
            record("http", json.dumps(body)[:70], f"{r.status_code} {r.text[:90]}", 400 <= r.status_code < 500 and shape)
        r = httpx.post(f"{url}/v1/audio/speech", content=b'{"input": NaN}', headers={"Content-Type": "application/json"})
        record("http", "NaN in the JSON", f"{r.status_code} {r.text[:90]}", 400 <= r.status_code < 500)
        for name, head, body in (
            ("Content-Length 10^12, short body", "Content-Length: 1000000000000", b'{"input": "hi"'),
            ("Content-Length 200, 20 bytes sent", "Content-Length: 200", b'{"input": "hello th'),
        ):
            t0 = time.perf_counter()
            with socket.create_connection(("127.0.0.1", 8711), timeout=60) as sock:
                sock.sendall(f"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             f"{head}\r\n\r\n".encode() + body)
                answer = sock.recv(4096).decode(errors="replace")
            seconds = time.perf_counter() - t0
            status = answer.split(" ", 2)[1] if answer else "none"
            record("http", name, f"{status} after {seconds:.1f} s", status in ("408", "413") and seconds < 15)
        big = b'{"input": "' + b"a" * (200 * 2**20) + b'"}'
        t0 = time.perf_counter()
        try:
            r = httpx.post(f"{url}/v1/audio/speech", content=big, headers={"Content-Type": "application/json"},
                           timeout=60)
            outcome, ok = f"{r.status_code} after {time.perf_counter() - t0:.1f} s", r.status_code == 413
        except httpx.HTTPError as e:  # the server answered 413 and closed before the upload ended
            outcome, ok = f"connection closed early ({type(e).__name__}) after {time.perf_counter() - t0:.1f} s", True
        record("http", "a 200 MB body", outcome, ok)
    finally:
        server.terminate()
        server.wait(30)
    load()
    summary()


def start_server(port: int, *args: str) -> tuple[subprocess.Popen, str]:
    """`toktts serve` on `port`, once /health says it is ready (or after two minutes)."""
    import httpx

    server = subprocess.Popen([sys.executable, "-m", "toktts.cli", "serve", "--port", str(port), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return server, url


def load() -> None:
    """32 clients x 2 requests: all served with the default queue; with --max-queue 4 the rest
    get 429, and nothing gets a 5xx."""
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    for queue, expect_all in (("64", True), ("4", False)):
        server, url = start_server(8712, "--max-queue", queue)
        try:

            def client(i: int) -> list[int]:
                return [httpx.post(f"{url}/v1/audio/speech", json={"input": f"Number {i}, take {j}.",
                                                                   "response_format": "wav"}, timeout=600).status_code
                        for j in range(2)]

            with ThreadPoolExecutor(32) as pool:
                codes = [c for pair in pool.map(client, range(32)) for c in pair]
            counts = {c: codes.count(c) for c in sorted(set(codes))}
            ok = counts.get(200, 0) == 64 if expect_all else set(counts) <= {200, 429} and 429 in counts
            record("load", f"32 clients x 2 requests, --max-queue {queue}", str(counts), ok)
        finally:
            server.terminate()
            server.wait(30)


def summary() -> None:
    import shutil

    shutil.rmtree(TMP, ignore_errors=True)
    failed = [r for r in results if not r[2]]
    print(f"\n{len(results)} cases, {len(failed)} failed")
    for case, outcome, _ in failed:
        print(f"  FAIL {case} -> {outcome}")


if __name__ == "__main__":
    if sys.argv[1:] == ["load"]:
        load()
        summary()
    else:
        main()
