"""Throughput and latency of `toktts serve` under 1, 4 and 16 concurrent clients.

    python benchmarks/bench_server.py                          # the bundled voice; prints a Markdown section
    python benchmarks/bench_server.py --append benchmarks/RESULTS.md
    python benchmarks/bench_server.py --model runs/demo --requests 48 --clients 1 4 16

Starts a real server in a subprocess (`toktts serve --port 0`, so the clients' Python does not
share its interpreter), then runs closed-loop clients: each sends its next request as soon as
the last one has been read to the end. Requests are LJSpeech validation sentences of at most
`--max-chars` characters, as streamed wav. Two kinds:

- seeded: every request has its own seed;
- unseeded: no seed.
Requests waiting together with the same sampling settings are batched either way (up to the
server's --max-batch), each keeping its seed; a request that runs alone streams.

Reported per level: requests/s, seconds of audio produced per wall second, latency (request
sent -> last byte) and time to first byte (request sent -> first body byte after the WAV
header), median and p90, and the mean batch size the server logged.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from importlib import resources

import httpx
import numpy as np

WAV_HEADER = 44


def start_server(model: str | None, extra: list[str]) -> tuple[subprocess.Popen, str, list[str]]:
    cmd = [sys.executable, "-m", "toktts.cli", "serve", "--port", "0"] + (["--model", model] if model else []) + extra
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def drain() -> None:  # keep reading, or the server blocks on a full pipe
        for line in proc.stderr:
            lines.append(line)
            if not found.is_set() and (m := re.search(r"serving (http://\S+?:\d+)", line)):
                url.append(m.group(1))
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    if not found.wait(120):
        proc.kill()
        sys.exit("the server did not start:\n" + "".join(lines))
    deadline = time.monotonic() + 300
    while httpx.get(f"{url[0]}/health").status_code != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("the server did not become ready:\n" + "".join(lines))
        time.sleep(0.2)
    return proc, url[0], lines


def one_request(client: httpx.Client, url: str, text: str, seed: int | None, sample_rate: int) -> dict:
    body = {"model": "toktts", "voice": "alloy", "input": text, "response_format": "wav"}
    if seed is not None:
        body["seed"] = seed
    t0 = time.perf_counter()
    first, n = None, 0
    with client.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=600) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.read().decode()}")
        for chunk in r.iter_raw():
            n += len(chunk)
            if first is None and n > WAV_HEADER:
                first = time.perf_counter()
    end = time.perf_counter()
    return {"latency": end - t0, "ttfb": first - t0, "audio": (n - WAV_HEADER) / 2 / sample_rate}


def run_level(url: str, texts: list[str], clients: int, n: int, seeded: bool, sample_rate: int,
              log_lines: list[str]) -> dict:
    start_line = len(log_lines)
    todo = iter(range(n))
    lock = threading.Lock()
    results: list[dict] = []

    def client_loop() -> None:
        with httpx.Client() as client:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                results.append(one_request(client, url, texts[i % len(texts)], i if seeded else None, sample_rate))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client_loop) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    time.sleep(0.2)  # the server logs a streamed request when its body ends
    batches = [int(b) for line in log_lines[start_line:] for b in re.findall(r"batch=(\d+)", line)]
    lat = np.array([r["latency"] for r in results])
    ttfb = np.array([r["ttfb"] for r in results])
    audio = sum(r["audio"] for r in results)
    return {
        "clients": clients, "requests": n, "wall": wall, "rps": n / wall, "audio_per_s": audio / wall,
        "lat_p50": np.median(lat), "lat_p90": np.percentile(lat, 90),
        "ttfb_p50": np.median(ttfb), "ttfb_p90": np.percentile(ttfb, 90),
        "batch": float(np.mean(batches)) if batches else float("nan")
    }


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return f"{os.cpu_count()} CPUs, {cpu}, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the bundled voice)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=32, help="requests per level")
    ap.add_argument("--max-chars", type=int, default=100, help="longest sentence used")
    ap.add_argument("--append", default=None, metavar="MD", help="append the Markdown section to this file")
    args = ap.parse_args()

    val = (resources.files("toktts") / "data" / "ljspeech" / "val.txt").read_text().splitlines()
    texts = [t for t in (line.split("|", 1)[1] for line in val if "|" in line) if len(t) <= args.max_chars]
    load0 = os.getloadavg()
    proc, url, log_lines = start_server(args.model, ["--max-queue", "256"])
    try:
        health = httpx.get(f"{url}/health").json()
        sr = health["sampling_rate"]
        one_request(httpx.Client(), url, texts[0], 0, sr)  # one more warm-up through HTTP
        rows = []
        for seeded in (True, False):
            for c in args.clients:
                row = run_level(url, texts, c, args.requests, seeded, sr, log_lines)
                row["kind"] = "seeded" if seeded else "unseeded"
                rows.append(row)
                print(f"{row['kind']:>8} x{c:<3} {row['rps']:.2f} req/s, {row['audio_per_s']:.1f} audio s/s, "
                      f"latency p50 {row['lat_p50']:.2f} s, ttfb p50 {row['ttfb_p50']:.2f} s, "
                      f"batch {row['batch']:.1f}", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
    load1 = os.getloadavg()

    mean_chars = np.mean([len(texts[i % len(texts)]) for i in range(args.requests)])
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    cmd = env + "python benchmarks/bench_server.py " + " ".join(sys.argv[1:])
    out = [
        "## Server: `toktts serve` under concurrent clients",
        "",
        f"Generated by `{cmd.strip()}` on {datetime.now():%Y-%m-%d %H:%M}.",
        "",
        f"Machine: {machine()}. Model: {health['model']} ({sr} Hz). Load average (1/5/15 min) "
        f"{' '.join(f'{x:.2f}' for x in load0)} at the start, {' '.join(f'{x:.2f}' for x in load1)} at the end.",
        "",
        f"{args.requests} requests per row, LJSpeech validation sentences of <= {args.max_chars} characters "
        f"(mean {mean_chars:.0f}), streamed wav, closed-loop clients on the same machine. Latency: request "
        "sent -> last byte; first byte: -> first audio byte after the WAV header. Audio s/s: seconds of "
        "speech delivered per wall-clock second. Requests waiting together are batched (`--max-batch 8`), "
        "each with its own seed.",
        "",
        "| kind | clients | req/s | audio s/s | latency p50 | latency p90 | first byte p50 | first byte p90 | mean batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| {r['kind']} | {r['clients']} | {r['rps']:.2f} | {r['audio_per_s']:.1f} | {r['lat_p50']:.2f} s | "
                   f"{r['lat_p90']:.2f} s | {r['ttfb_p50']:.2f} s | {r['ttfb_p90']:.2f} s | {r['batch']:.1f} |")
    section = "\n".join(out) + "\n"
    print(section)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + section)


if __name__ == "__main__":
    main()
