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
