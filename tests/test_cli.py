"""The console script's own behaviour: help, normalize, and user errors without tracebacks."""
import subprocess
import sys


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toktts.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=120)


def test_help_lists_the_subcommands():
    proc = run("--help")
    assert proc.returncode == 0
    for name in ("corpus", "prepare", "train", "say", "samples", "evaluate", "bench", "normalize"):
        assert name in proc.stdout


def test_every_option_has_help_and_there_is_a_version():
    import argparse

    from toktts.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, path + [name])
            elif not action.help:
                missing.append(" ".join(path + [action.dest]))

    walk(build_parser(), ["toktts"])
    assert missing == []
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("toktts ")


def test_normalize_prints_what_the_model_reads():
    proc = run("normalize", "The 3rd of May, 1997, cost $5.50")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "the third of may, nineteen ninety-seven, cost five dollars and fifty cents"
    assert run("normalize", "-", stdin="Dr. Smith paid 10%.").stdout.strip() == "doctor smith paid ten percent."


def test_missing_text_file_is_a_clear_error():
    proc = run("normalize", "--text-file", "/nonexistent/t.txt")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: text file '/nonexistent/t.txt' not found"


def test_unknown_corpus_voice_is_a_clear_error(tmp_path):
    proc = run("corpus", "synth", "--out", str(tmp_path / "c"), "--voice", "nobody", "--limit", "1")
    assert proc.returncode == 2
    assert "nobody" in proc.stderr and "Traceback" not in proc.stderr


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return line


def test_say_writes_the_format_of_the_extension_and_prints_a_seed_that_reproduces(tmp_path):
    import re

    import soundfile as sf

    from helpers import toktts_here

    def run(*args: str) -> subprocess.CompletedProcess:  # in this process: no torch import per call
        return toktts_here(*args, check=False)

    first = run("say", "Hi there.", "-o", str(tmp_path / "a.flac"))
    assert first.returncode == 0, first.stderr
    seed = re.search(r"seed (\d+)", first.stdout).group(1)
    assert sf.info(str(tmp_path / "a.flac")).format == "FLAC"
    again = run("say", "Hi there.", "-o", str(tmp_path / "b.wav"), "--seed", seed, "--speed", "1.0")
    assert again.returncode == 0, again.stderr
    a, b = sf.read(str(tmp_path / "a.flac"))[0], sf.read(str(tmp_path / "b.wav"))[0]
    assert len(a) == len(b) and abs(a - b).max() < 1e-4  # the same take
    slow = run("say", "Hi there.", "-o", str(tmp_path / "c.wav"), "--seed", seed, "--speed", "0.5")
    assert slow.returncode == 0, slow.stderr
    assert abs(sf.info(str(tmp_path / "c.wav")).frames - 2 * len(b)) < 0.05 * len(b)


def test_say_to_a_pipe_through_dev_stdout():
    import io

    import soundfile as sf

    proc = subprocess.run([sys.executable, "-m", "toktts.cli", "say", "Hi there.", "-o", "/dev/stdout", "--format",
                           "flac", "--seed", "2"], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sf.info(io.BytesIO(proc.stdout)).format == "FLAC"  # the audio alone: the report went to stderr
    assert b"wrote /dev/stdout" in proc.stderr


def test_say_stream_with_output_writes_both(tmp_path):
    import numpy as np
    import soundfile as sf

    proc = subprocess.run([sys.executable, "-m", "toktts.cli", "say", "Hi there.", "--stream", "--seed", "3",
                           "-o", str(tmp_path / "x.wav")], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    streamed = np.frombuffer(proc.stdout, "<i2")
    saved = sf.read(str(tmp_path / "x.wav"), dtype="int16")[0]
    np.testing.assert_array_equal(streamed, saved)


def test_say_refuses_bad_outputs_and_inputs_before_any_work(tmp_path, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"caf\xe9\n")
    cases = [
        (["say", "Hi.", "-o", str(tmp_path / "x.xyz")], "unknown extension '.xyz'"),
        (["say", "Hi.", "-o", ""], "-o is empty"),
        (["say", "Hi.", "-o", str(tmp_path / "x.mp3"), "--format", "wav"], "ends in .mp3"),
        (["say", "Hi.", "--speed", "9", "-o", str(tmp_path / "y.wav")], "--speed must be between 0.25 and 4.0"),
        (["say", "Hi.", "--device", "toaster", "-o", str(tmp_path / "y.wav")], "unknown device 'toaster'"),
        (["say", "Hi.", "--seed", str(2**70), "-o", str(tmp_path / "y.wav")], "seed must be from 0"),
        (["say", "Hi.", "--temperature", "nan", "-o", str(tmp_path / "y.wav")], "temperature must be"),
        (["say", "--text-file", str(latin1), "-o", str(tmp_path / "y.wav")], "is not UTF-8 (byte 3)"),
        (["bench", "synth", "--threads", "0"], "--threads must be >= 1"),
    ]
    from toktts.cli import main

    for args, words in cases:  # in this process: the same `main`, without a torch import per case
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        assert words in err.strip().splitlines()[-1]
    proc = subprocess.run([sys.executable, "-m", "toktts.cli", "say", "-", "-o", str(tmp_path / "z.wav")],
                          input=b"caf\xe9 au lait", capture_output=True, timeout=120)
    assert proc.returncode == 2 and b"stdin is not UTF-8" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.txt"]  # nothing written


def test_a_kill_leaves_nothing_behind(tmp_path):
    import signal
    import time

    text = "It was the best of times, it was the worst of times. " * 200  # 200 chunks: far more than 6 s
    proc = subprocess.Popen([sys.executable, "-m", "toktts.cli", "say", text, "-o", str(tmp_path / "x.wav")],
                            stderr=subprocess.PIPE, text=True)
    seen, deadline = "", time.time() + 120
    while "say:" not in seen and time.time() < deadline:  # loaded, and its progress bar has begun
        char = proc.stderr.read(1)
        if not char:
            break
        seen += char
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    err = seen + err
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    assert list(tmp_path.iterdir()) == []


def test_voices_lists_the_folder_and_say_takes_a_voice_by_name(tmp_path, monkeypatch):
    import json
    import os

    from toktts.voices import bundled_voice_dir

    folder = tmp_path / "voices"
    folder.mkdir()
    (folder / "second").symlink_to(bundled_voice_dir())
    (folder / "not-a-voice").mkdir()
    monkeypatch.setenv("TOKTTS_VOICES", str(folder))
    listed = json.loads(run("voices", "--json").stdout)
    assert [(v["name"], v["default"]) for v in listed] == [("demo", True), ("second", False)]
    assert listed[1]["codec"] == "mel" and listed[1]["sampling_rate"] == 24000
    assert "second" in run("voices").stdout
    proc = run("say", "Hello there.", "--voice", "second", "--seed", "1", "-o", str(tmp_path / "x.wav"))
    assert proc.returncode == 0 and os.path.getsize(tmp_path / "x.wav") > 1000, proc.stderr
    assert "unknown voice 'zzz'; the voices here are: demo, second" in _error_line(
        run("say", "Hi.", "--voice", "zzz", "-o", str(tmp_path / "y.wav")))
    assert "not both" in _error_line(run("say", "Hi.", "--voice", "demo", "--model", str(folder / "second")))


def test_a_usage_mistake_is_one_line():
    proc = run("say", "Hi.", "--temprature", "0.5")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: unrecognized arguments: --temprature 0.5 (see `toktts --help`)"]
    proc = run("say", "Hi.", "--top-k", "many")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "'many'" in proc.stderr
