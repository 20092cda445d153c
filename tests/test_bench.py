"""`toktts bench` prints a report and, as its last line, one JSON object."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = str(Path(__file__).parent.parent / "configs" / "demo.yaml")
TINY = ["model.enc_layers=1", "model.enc_dim=32", "model.enc_heads=2", "model.dec_layers=1",
        "model.dec_dim=32", "model.dec_heads=2", "codec.codebook_size=64", "train.batch_frames=400"]


@pytest.mark.parametrize("what, keys", [("train", {"frames_per_s"}), ("synth", {"rtf", "seconds_audio", "model_rtf"})])
def test_bench_last_line_is_json(what, keys):
    args = [sys.executable, "-m", "toktts.cli", "bench", what, "--config", DEMO, "--runs", "2",
            "--seconds", "0.5", "--threads", "1"]
    for item in TINY:
        args += ["--set", item]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert keys <= set(result)
    assert all(result[k] > 0 for k in keys)
    assert len(lines) > 1  # a human-readable report precedes it
    if what == "synth":
        assert abs(result["seconds_audio"] - 0.5) <= 1 / 25  # whole codec frames (25 Hz)
