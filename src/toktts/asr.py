"""Speech recognition for toktts: scoring transcripts against texts, and the ASRs themselves.

Evaluation measures a model with it (`toktts.evaluate`); synthesis uses it to check and to choose
takes (`--verify`, `generate.best_of`). Two ASRs: `pocketsphinx` (offline, its bundled US English
model, 16 kHz) or `whisper:PATH`, a local Whisper checkpoint directory read with transformers.
Compare error rates only under the same ASR.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toktts.errors import TokttsError
from toktts.text import normalize

log = logging.getLogger(__name__)

ASR_RATE = 16000  # both ASRs read 16 kHz mono


# ----------------------------------------------------------------------------- scoring


_TAG = re.compile(r"<[^>]*>|\[[^\]]*\]")  # ASR filler tags such as <sil> or [NOISE]
_NOT_LETTER = re.compile(r"[^a-z ]+")


def score_text(text: str) -> str:
    """The form both sides are compared in: `normalize`d, hyphens as spaces, no punctuation."""
    spoken = normalize(_TAG.sub(" ", text)).replace("-", " ")
    return " ".join(_NOT_LETTER.sub("", spoken).split())


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """(CER, WER) over paired scored texts: all edits / all reference characters or words."""
    import jiwer

    return float(jiwer.cer(list(references), list(hypotheses))), float(jiwer.wer(list(references), list(hypotheses)))


# ----------------------------------------------------------------------------- ASR


def _load_pcm16(path: Path) -> np.ndarray:
    """A wav as 16 kHz mono int16, what pocketsphinx reads."""
    from toktts.audio import load_audio, to_int16

    return to_int16(load_audio(path, ASR_RATE))


def _sphinx_decoder():
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise TokttsError("pocketsphinx is not installed: `pip install pocketsphinx`") from None
    try:
        return Decoder(loglevel="FATAL")
    except Exception as e:  # noqa: BLE001 -- whatever breaks loading its bundled model, say so in one line
        raise TokttsError(
            f"pocketsphinx cannot load its English model ({type(e).__name__}: {e}): "
            "`pip install --force-reinstall pocketsphinx`"
        ) from None


def _sphinx_run(pcm: np.ndarray, decoder) -> str:
    if len(pcm) < ASR_RATE // 100:  # pocketsphinx cannot process an (almost) empty buffer
        return ""
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


_MARK = "toktts-asr\t"


def _sphinx_serve(listing: str) -> None:
    """ASR worker process: transcribe the wavs listed in a file (one path a line), one line each."""
    decoder = _sphinx_decoder()
    for path in Path(listing).read_text(encoding="utf-8").splitlines():
        print(_MARK + json.dumps(_sphinx_run(_load_pcm16(Path(path)), decoder)), flush=True)


class PocketSphinx:
    """pocketsphinx's bundled US English model. It holds the GIL, so several clips run at once
    in worker processes -- plain subprocesses rather than multiprocessing, whose spawn start
    method would re-run the caller's script in every worker."""

    name = "pocketsphinx"

    def __init__(self, jobs: int | None = None):
        self.decoder = _sphinx_decoder()  # fails here, before any synthesis, if it cannot load
        self.jobs = max(1, jobs if jobs is not None else min(4, os.cpu_count() or 1))

    def transcribe_audio(self, audio: np.ndarray, rate: int) -> str:
        """One waveform in memory (any rate) -> its transcript, on a fresh decoder (~0.3 s): a
        decoder's transcript of a clip depends on the clips it heard before (measured), and takes
        compared with each other must be heard alike."""
        import soxr

        from toktts.audio import to_int16

        pcm = soxr.resample(audio.astype(np.float32), rate, ASR_RATE) if rate != ASR_RATE else audio
        return _sphinx_run(to_int16(pcm), _sphinx_decoder())

    def transcribe(self, wavs: list[Path], update: Callable[[int], Any]) -> list[str]:
        jobs = min(self.jobs, len(wavs) // 4)  # a worker costs ~1 s to start
        if jobs <= 1:
            out = []
            for path in wavs:
                out.append(_sphinx_run(_load_pcm16(path), self.decoder))
                update(1)
            return out
        return _transcribe_in_workers(wavs, jobs, update)


def _transcribe_in_workers(wavs: list[Path], jobs: int, update: Callable[[int], Any]) -> list[str]:
    """Share the wavs round-robin among `jobs` worker processes; collect their lines in order."""
    results: list[str | None] = [None] * len(wavs)
    shares = [list(range(j, len(wavs), jobs)) for j in range(jobs)]
    lock = threading.Lock()

    def collect(proc: subprocess.Popen, share: list[int]) -> None:
        done = 0
        for line in proc.stdout:
            if line.startswith(_MARK) and done < len(share):
                results[share[done]] = json.loads(line[len(_MARK):])
                done += 1
                with lock:
                    update(1)

    with tempfile.TemporaryDirectory(prefix="toktts-asr-") as tmp, contextlib.ExitStack() as stack:
        procs = []
        for j, share in enumerate(shares):
            listing = Path(tmp) / f"{j}.txt"
            listing.write_text("".join(f"{Path(wavs[k]).resolve()}\n" for k in share), encoding="utf-8")
            log_file = stack.enter_context(open(Path(tmp) / f"{j}.log", "w+"))
            code = "import sys; from toktts.asr import _sphinx_serve; _sphinx_serve(sys.argv[1])"
            proc = subprocess.Popen([sys.executable, "-c", code, str(listing)],
                                    stdout=subprocess.PIPE, stderr=log_file, text=True)
            stack.callback(_stop, proc)  # also on Ctrl-C or an error in another worker
            procs.append((proc, log_file))
        readers = [threading.Thread(target=collect, args=(proc, share), daemon=True)
                   for (proc, _), share in zip(procs, shares)]
        for r in readers:
            r.start()
        for r in readers:
            r.join()
        for proc, log_file in procs:
            if proc.wait() != 0:
                log_file.seek(0)
                last = ([ln.strip() for ln in log_file.read().splitlines() if ln.strip()] or ["no message"])[-1]
                raise TokttsError(f"a pocketsphinx worker failed (exit {proc.returncode}): {last}; "
                                  "rerun with --asr-jobs 1 to transcribe in this process")
    if any(r is None for r in results):
        raise TokttsError("pocketsphinx workers returned fewer transcripts than clips; rerun with --asr-jobs 1")
    return results


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


class Whisper:
    """A local Whisper checkpoint directory read with transformers' ASR pipeline."""

    def __init__(self, path: str, device: str | None = None):
        self.name = f"whisper:{path}"
        if not Path(path).expanduser().exists():
            raise TokttsError(f"Whisper model {path!r} does not exist: give a local Whisper model directory "
                              "(--asr whisper:PATH) or use --asr pocketsphinx")
        try:
            from transformers import pipeline
        except ImportError:
            raise TokttsError("--asr whisper needs transformers: `pip install transformers`") from None
        try:
            self.pipe = pipeline("automatic-speech-recognition", model=str(Path(path).expanduser()),
                                 device=device)
        except Exception as e:  # noqa: BLE001 -- not a Whisper model, damaged files, ...: one line
            why = " ".join(str(e).split())[:200]
            raise TokttsError(f"cannot load a Whisper model from {path!r} ({type(e).__name__}: {why})") from None
        multilingual = getattr(self.pipe.model.generation_config, "is_multilingual", False)
        self.kwargs = {"language": "english", "task": "transcribe"} if multilingual else {}

    def transcribe(self, wavs: list[Path], update: Callable[[int], Any]) -> list[str]:
        from toktts.audio import load_audio

        out = []
        for path in wavs:
            audio = load_audio(path, ASR_RATE)
            # Whisper hears 30 s at a time: a longer clip (a runaway) is read in 30 s pieces.
            pieces = [audio[i : i + 30 * ASR_RATE] for i in range(0, len(audio), 30 * ASR_RATE)]
            words = [self.pipe({"raw": p.astype(np.float32), "sampling_rate": ASR_RATE}, generate_kwargs=self.kwargs)
                     ["text"].strip() for p in pieces if len(p) >= ASR_RATE // 100]
            out.append(" ".join(words))
            update(1)
        return out


def make_asr(spec: str, device: str | None = None, jobs: int | None = None) -> PocketSphinx | Whisper:
    """`pocketsphinx` or `whisper:PATH` -> a loaded ASR; a one-line TokttsError if it cannot load."""
    if spec == "pocketsphinx":
        return PocketSphinx(jobs)
    if spec.startswith("whisper:") and spec[len("whisper:"):]:
        return Whisper(spec[len("whisper:"):], device)
    raise TokttsError(f"unknown ASR {spec!r}: use pocketsphinx or whisper:PATH (a local Whisper model directory)")
