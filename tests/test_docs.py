"""The documentation's examples run as written.

A code block in README.md or docs/*.md is run when the line before its fence is a marker:

    <!-- test -->          run in a fresh empty directory
    <!-- test: root -->    run from the repository root (files it adds there are removed after)
    <!-- test: server -->  run in a fresh directory while `toktts serve` answers on 127.0.0.1:8000

bash blocks run under `bash -e -o pipefail`, python blocks under this Python; every process a
block starts (a server in the background) is stopped after it. Unmarked blocks are the ones
that need what a test cannot have here (hours of training, a sound card, a GPU).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_MARKER = re.compile(r"^<!-- test(?:: (root|server))? -->$")
_FENCE = re.compile(r"^```(\w*)\s*$")


def runnable_blocks() -> list[tuple[str, str, str, str]]:
    """(id, where, language, code) of every marked block."""
    blocks = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            fence = _FENCE.match(lines[i])
            if not fence or not fence.group(1):
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            marker = _MARKER.match(lines[i - 1].strip()) if i > 0 else None
            if marker:
                name = f"{doc.relative_to(ROOT)}:{i + 1}"
                blocks.append((name, marker.group(1) or "fresh", fence.group(1), "\n".join(lines[i + 1 : end])))
            i = end + 1
    return blocks


BLOCKS = runnable_blocks()


def test_the_readme_starts_with_runnable_install_and_test_commands():
    readme = [b for b in BLOCKS if b[0].startswith("README.md")]
    assert readme and readme[0][3].startswith("pip install torch==2.13.0") and "toktts say" in readme[0][3]
    assert len(BLOCKS) >= 6


def _run(language: str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    command = ["bash", "-e", "-o", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        with_group(proc.pid, signal.SIGTERM)
    return subprocess.CompletedProcess(command, proc.returncode, out, "")


def with_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen([sys.executable, "-m", "toktts.cli", "serve", "--port", "8000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import httpx

    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "toktts serve exited"
        try:
            if httpx.get("http://127.0.0.1:8000/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.2)
    yield
    with_group(proc.pid, signal.SIGTERM)
    proc.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize("name, where, language, code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_documented_example_runs(name, where, language, code, tmp_path, request):
    assert language in ("bash", "python"), f"{name}: no runner for {language} blocks"
    if where == "server":
        request.getfixturevalue("server")
    cwd = ROOT if where == "root" else tmp_path
    before = set(os.listdir(ROOT))
    try:
        proc = _run(language, code, cwd)
    finally:
        if where == "root":
            for added in set(os.listdir(ROOT)) - before:
                path = ROOT / added
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
