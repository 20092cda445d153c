"""Running the `toktts` command line on the tiny corpus (conftest.py) with a tiny model."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

DEMO = str(Path(__file__).parent.parent / "configs" / "demo.yaml")


def tiny_overrides(corpus: Path, out: Path, **extra) -> list[str]:
    """`--set` values for a 6-step run of a ~50k-parameter model; `extra` overrides them."""
    settings = {
        "data.corpus": corpus, "data.val_size": 2, "data.cache_dir": corpus.parent / "cache",
        "codec.codebook_size": 32, "codec.griffin_lim_iters": 4,
        "model.enc_layers": 1, "model.enc_dim": 32, "model.enc_heads": 2,
        "model.dec_layers": 2, "model.dec_dim": 32, "model.dec_heads": 2,
        "train.output_dir": out, "train.max_steps": 6, "train.batch_frames": 1500, "train.warmup_steps": 2,
        "train.eval_every": 3, "train.save_every": 3, "train.log_every": 1, "train.max_minutes": 0,
        "train.schedule": "steps",
        "generate.max_seconds": 2.0, "generate.chunk_chars": 0,  # 0: from the training texts (tested)
    }
    settings.update(extra)
    return [f"{k}={v}" for k, v in settings.items()]


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def toktts(*args: str, check: bool = True, timeout: int = 300, max_file_bytes: int | None = None
           ) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process. `max_file_bytes` simulates a full disk: writing a file past
    that size fails with EFBIG (Python ignores the SIGXFSZ that would otherwise kill it)."""
    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    proc = subprocess.run(
        [sys.executable, "-m", "toktts.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=limit_files if max_file_bytes else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"toktts {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def toktts_here(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the CLI's own `main` in this process, as `toktts` would in a fresh one: the same exit
    code, and what Python writes to stdout and stderr, log lines included (not what C libraries
    write to the file descriptors); without a torch import per call. For commands that leave no
    process-wide state behind (not --threads, not two processes, not another train.precision)."""
    import contextlib
    import io
    import logging

    from toktts.cli import main

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # main's logging.basicConfig keeps the handlers it finds (pytest's): log to this call's stderr
    # at main's level and format, as a fresh process would.
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if "--verbose" in args or "-v" in args else logging.INFO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        root.handlers[:] = handlers  # (and any basicConfig added, were pytest's logging off)
        root.setLevel(level)
    if code == 130:  # main turned a Ctrl-C into its exit code: stop the test run, not only this test
        raise KeyboardInterrupt
    proc = subprocess.CompletedProcess(["toktts", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"toktts {' '.join(args)} failed ({code}):\n{proc.stderr[-3000:]}")
    return proc


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The process failed as a user error: exit 2, one `error:` line holding every fragment."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def tiny_tts(seed: int = 0, max_seconds: float | None = None, dec_layers: int = 1):
    """A tiny random-weight model with the bundled voice's codec (and a "no text" memory): fast to
    run, real in every other way."""
    import torch

    from toktts.checkpoint import load_model_dir
    from toktts.config import ModelConfig
    from toktts.inference import TTS, bundled_voice_dir
    from toktts.model import TokTTS

    _, cfg, codec = load_model_dir(bundled_voice_dir())
    m = cfg.model
    cfg.model = ModelConfig(enc_layers=1, enc_dim=32, enc_heads=2, dec_layers=dec_layers, dec_dim=32, dec_heads=2,
                            unconditional=True, text_vocab_size=m.text_vocab_size, n_codebooks=m.n_codebooks,
                            codebook_size=m.codebook_size)
    if max_seconds is not None:
        cfg.generate.max_seconds = max_seconds
    torch.manual_seed(seed)
    return TTS(TokTTS(cfg.model).eval(), cfg, codec, torch.device("cpu"))


def mute_tts(max_seconds: float = 1.0):
    """`tiny_tts` whose every take ends at once (stream 0's end of speech far above the rest, no
    floor on ending): all silence."""
    import torch

    tts = tiny_tts(max_seconds=max_seconds)
    tts.cfg.generate.min_seconds_per_char = 0.0
    with torch.no_grad():
        tts.model.decoder.head.bias[tts.model.layout.eos_id] = 50.0
    return tts


def batch(model, B=2, L=7, T=9, seed=0):
    """A random (text (B, L), lengths (B,), tokens (B, N, S)) batch for `model`: the first item
    L characters long, the others 2 shorter (padded), every one T frames."""
    import torch

    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, 30, (B, L), generator=g)
    text_lengths = torch.tensor([L] + [L - 2] * (B - 1))
    text[1:, L - 2 :] = 0
    lay = model.layout
    codes = torch.randint(0, lay.codebook_size, (B, lay.n_codebooks, T), generator=g)
    tokens = lay.tokens(codes, torch.full((B,), T))
    return text, text_lengths, tokens
