"""Corpora in the LJSpeech layout: read one, download LJSpeech, or synthesize one offline with flite.

The layout every toktts corpus uses::

    DIR/metadata.csv      one utterance a line: id|text|normalized_text
                          (UTF-8, no header, `|`-separated, quotes are literal text;
                          2 columns `id|text` are accepted too)
    DIR/wavs/<id>.wav     any sample rate: `prepare` resamples

Three ways to get one:

* `download_ljspeech` fetches LJSpeech-1.1 (2.6 GB, 13,100 clips, 22.05 kHz), resumable and
  verified by sha256, and extracts it safely.
* `synth_corpus` synthesizes the packaged LJSpeech transcripts with `flite`, offline, in a few
  minutes: a small corpus to check the whole pipeline (prepare → train → say) on any machine.
* any directory you make yourself in this layout.

Every writer here is resumable and atomic (temp name, then rename), so an interrupted run is
never mistaken for a complete one and rerunning the same command carries on where it stopped.
"""
from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import logging
import os
import random
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import wave
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tqdm import tqdm

from toktts.errors import TokttsError

logger = logging.getLogger(__name__)

LJSPEECH_URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
# The published archive's sha256 (the same value torchaudio's LJSPEECH dataset and Homebrew's
# lj-speech formula check); the archive is 2,748,572,632 bytes.
LJSPEECH_SHA256 = "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"
LJSPEECH_BYTES = 2_748_572_632

_MAKE_ONE = (
    "make one with `toktts corpus synth --out DIR` (offline, flite) "
    "or `toktts corpus download ljspeech --out DIR`"
)
# An id names a file in wavs/: no path separators, no whitespace, and no leading dot
# (that also keeps ids apart from the hidden temp files written below).
_ID_RE = re.compile(r"[^./\\\s][^/\\\s]*")
_CHUNK = 1 << 20  # bytes per network read and per hash update
_TIMEOUT_S = 60.0  # per socket operation, not for the whole download
_FLITE_TIMEOUT_S = 300.0  # one sentence takes well under a second; this only catches a hang


@dataclass(frozen=True)
class Utterance:
    """One row of metadata.csv and where its audio is."""

    id: str
    text: str  # the metadata's raw text (column 2)
    normalized_text: str  # column 3 if present and non-empty, else column 2
    wav_path: Path


# ----------------------------------------------------------------------------- reading


def _parse_rows(lines: Iterable[str], source: str) -> list[tuple[str, str, str]]:
    """(id, text, normalized_text) for each valid `id|text[|normalized_text]` line.

    Blank lines are ignored; malformed ones (wrong column count, empty text, an id that is not a
    plain file name, a repeated id) are skipped and reported in one warning, because one bad line
    in 13,000 should not stop a run, but a silent loss should not go unnoticed either.
    """
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    bad: list[str] = []
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        # No csv module: LJSpeech has unbalanced quotes in its text, which are literal.
        fields = [f.strip() for f in line.split("|")]
        if len(fields) not in (2, 3):
            bad.append(f"line {lineno}: {len(fields)} columns")
            continue
        uid, text = fields[0], fields[1]
        normalized = fields[2] if len(fields) == 3 and fields[2] else text
        if not _ID_RE.fullmatch(uid):
            bad.append(f"line {lineno}: bad id {uid!r}")
        elif not text:
            bad.append(f"line {lineno}: empty text")
        elif uid in seen:
            bad.append(f"line {lineno}: repeated id {uid!r}")
        else:
            seen.add(uid)
            rows.append((uid, text, normalized))
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        logger.warning(
            "skipped %d malformed line(s) in %s, expected `id|text` or `id|text|normalized_text`: %s%s",
            len(bad), source, "; ".join(bad[:3]), more,
        )
    return rows


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: tolerate the BOM some editors put at the start of a CSV.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise TokttsError(f"{path} is not UTF-8 text ({e}): save it as UTF-8") from None


def read_corpus(directory: str | Path) -> list[Utterance]:
    """Read an LJSpeech-layout corpus: its metadata.csv rows, with `wavs/<id>.wav` paths.

    The wavs are not opened or even checked for existence here (`prepare` counts missing ones).
    Raises TokttsError if the directory or metadata.csv is missing or has no valid row.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise TokttsError(f"corpus directory {directory} {what}: {_MAKE_ONE}")
    metadata = directory / "metadata.csv"
    if not metadata.is_file():
        raise TokttsError(
            f"no metadata.csv in corpus directory {directory}: an LJSpeech-layout corpus has "
            f"metadata.csv (id|text|normalized_text lines) and wavs/<id>.wav; {_MAKE_ONE}"
        )
    rows = _parse_rows(_read_text(metadata).split("\n"), str(metadata))
    if not rows:
        raise TokttsError(
            f"{metadata} has no valid `id|text|normalized_text` line: fix it or {_MAKE_ONE}"
        )
    wavs = directory / "wavs"
    return [Utterance(uid, text, norm, wavs / f"{uid}.wav") for uid, text, norm in rows]


def read_transcripts(path: str | Path) -> list[tuple[str, str]]:
    """(id, text) pairs from `ID|text` lines, or from LJSpeech metadata (3 columns).

    With 3 columns the normalized text (column 3) is taken: it spells numbers and abbreviations
    out, which is what a speaker (or flite) actually says.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise TokttsError(f"transcript file {path} does not exist: give a file of `ID|text` lines")
    rows = _parse_rows(_read_text(path).split("\n"), str(path))
    if not rows:
        raise TokttsError(f"{path} has no valid `ID|text` line: one `ID|text` per line is expected")
    return [(uid, norm) for uid, _, norm in rows]


def ids_in(text: str) -> set[str]:
    """The ids of a list of them: one `id` (or `id|text`) a line."""
    return {line.split("|")[0].strip() for line in text.splitlines() if line.strip()}


def packaged_transcripts(split: str = "train") -> list[tuple[str, str]]:
    """(id, normalized text) of the LJSpeech transcripts shipped with toktts.

    "train" has 12,500 sentences, "val" 100 others; no id is in both, so a corpus synthesized
    from "train" never contains a validation sentence.
    """
    if split not in ("train", "val"):
        raise TokttsError(f"unknown transcript split {split!r}: use 'train' or 'val'")
    resource = importlib.resources.files("toktts") / "data/ljspeech" / f"{split}.txt"
    text = resource.read_text(encoding="utf-8")
    return [(uid, norm) for uid, _, norm in _parse_rows(text.split("\n"), f"toktts:{split}.txt")]


# A voice trained on LJSpeech's sentences alone (6.5 s on average) has never ended a second of
# speech: it said "Hi." as near silence. The phrases below teach it short takes: a few words
# people say first to a TTS (none of them in LJSpeech), then windows of 1-4 words cut from the
# corpus's own sentences (never from the packaged validation texts, which are not among them).
_GREETINGS = (
    "Hi.", "Hello.", "Hello there.", "Hi there.", "Hey.", "Yes.", "No.", "Okay.", "OK.", "Sure.",
    "Thanks.", "Thank you.", "Thank you very much.", "Please.", "Sorry.", "Goodbye.", "Bye.",
    "Good morning.", "Good evening.", "Good night.", "Welcome.", "Wait.", "Stop.", "Go.", "Ready?",
    "Really?", "Why?", "What?", "Where?", "When?", "How are you?", "I am fine.", "Great!",
    "Wow!", "Oh.", "Right.", "Of course.", "Maybe.", "Excuse me.", "Nice to meet you.",
    "See you soon.", "Testing, one, two, three.", "One.", "Two.", "Three.", "Ten.", "Done.",
)


def short_phrases(rows: list[tuple[str, str]], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Up to `n` short utterances: the greetings above, then windows of 1-4 words of the given
    sentences, capitalised, mostly as statements, a few as questions or exclamations, no two of
    the same words. Deterministic for the same rows, n and seed; each id (`SHORT-` and a hash of
    the text) names its text, so a corpus synthesized again from other sentences never pairs a
    wav with another phrase's text. Fewer than `n` come back (with a warning) when the sentences
    hold too few distinct windows."""
    if n < 0:
        raise TokttsError(f"--short must be 0 or more short phrases, got {n}")
    rng = random.Random(seed)
    texts = list(_GREETINGS[:n])
    seen = {_words(t) for t in texts}
    words_of = [w for _, text in rows if (w := re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", text))]
    for _ in range(50 * n):  # windows repeat ("the", "of the"): bounded, not until n at any cost
        if len(texts) >= n or not words_of:
            break
        words = rng.choice(words_of)
        size = min(rng.choice((1, 2, 2, 3, 3, 4)), len(words))
        start = rng.randrange(len(words) - size + 1)
        phrase = " ".join(words[start : start + size])
        phrase = phrase[0].upper() + phrase[1:] + rng.choices(".?!", weights=(8, 1, 1))[0]
        if _words(phrase) not in seen:
            seen.add(_words(phrase))
            texts.append(phrase)
    if len(texts) < n:
        logger.warning("only %d distinct short phrases in %d sentences, not the %d asked for",
                       len(texts), len(rows), n)
    return [(f"SHORT-{hashlib.sha1(t.encode()).hexdigest()[:10]}", t) for t in texts]


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9'-]+", text.lower()))


# ----------------------------------------------------------------------------- flite


def _find_flite() -> str:
    flite = shutil.which("flite")
    if flite is None:
        raise TokttsError(
            "flite is not installed (no `flite` on PATH): `apt-get install flite` "
            "(Debian/Ubuntu) or `brew install flite`, or download a real corpus with "
            "`toktts corpus download ljspeech --out DIR`"
        )
    return flite


@lru_cache(maxsize=4)
def flite_voices(flite: str = "flite") -> tuple[str, ...]:
    """The voices compiled into this flite, as `flite -lv` lists them (e.g. slt, rms, awb, kal)."""
    try:
        out = subprocess.run([flite, "-lv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise TokttsError(f"cannot run `{flite} -lv` to list its voices: {e}") from None
    # "Voices available: kal awb_time kal16 awb rms slt "
    _, _, names = out.partition(":")
    return tuple(names.split())


def _wav_frames(path: Path) -> tuple[int, int]:
    """(frames, sample rate) of a PCM wav; raises wave.Error/EOFError/OSError if it is not one."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes(), w.getframerate()


def _synth_one(flite: str, voice: str, uid: str, text: str, wavs: Path) -> str | None:
    """Synthesize one sentence to wavs/<uid>.wav; returns None, or why it failed.

    flite exits 0 even when it writes nothing (unreadable text file, unwritable output), so
    success is judged by the wav itself. It is written under a hidden temp name and renamed
    only once complete: a wav with the final name is always a whole one.
    """
    fd, tmp_name = tempfile.mkstemp(dir=wavs, prefix=f".{uid}.", suffix=".tmp.wav")
    os.close(fd)
    tmp_wav = Path(tmp_name)
    tmp_txt = tmp_wav.with_suffix(".txt")
    try:
        # Text goes through a file (`-f`), never a shell or an argument flite might parse.
        tmp_txt.write_text(text + "\n", encoding="utf-8")
        proc = subprocess.run(
            [flite, "-voice", voice, "-f", str(tmp_txt), "-o", str(tmp_wav)],
            capture_output=True, text=True, errors="replace", timeout=_FLITE_TIMEOUT_S,
        )
        stderr = " ".join(proc.stderr.split())
        if proc.returncode != 0:
            return f"flite exited with {proc.returncode}: {stderr}"
        try:
            frames, _ = _wav_frames(tmp_wav)
        except (wave.Error, EOFError, OSError) as e:
            return f"flite wrote no valid wav ({e}) {stderr}".strip()
        if frames == 0:
            return f"flite wrote an empty wav {stderr}".strip()
        os.replace(tmp_wav, wavs / f"{uid}.wav")
        return None
    except subprocess.TimeoutExpired:
        return f"flite took more than {_FLITE_TIMEOUT_S:.0f} s"
    finally:
        tmp_wav.unlink(missing_ok=True)
        tmp_txt.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def synth_corpus(
    out_dir: str | Path,
    voice: str = "slt",
    texts: str | Path | None = None,
    limit: int | None = None,
    jobs: int = 2,
    progress: bool = True,
    short: int | None = None,
) -> Path:
    """Synthesize an LJSpeech-layout corpus with flite, offline; returns `out_dir`.

    texts: a file of `ID|text` lines (or LJSpeech metadata); by default the packaged LJSpeech
    *train* transcripts, so validation sentences never end up in a training corpus.
    limit: keep the first N sentences. jobs: flite processes run in parallel.
    short: add that many `short_phrases` of the sentences (greetings, then windows of 1-4 words),
    so a voice trained on it can say "Hi."; by default 16% of the packaged sentences kept (2,000
    for all 12,500, fewer with `limit`) and none with `texts` (an evaluation corpus must hold only
    its sentences).

    Resumable: wavs already in `out_dir/wavs` are kept, so rerunning after an interruption only
    synthesizes what is missing. A sentence flite fails on is skipped, counted and reported at the
    end, and left out of metadata.csv (written atomically, last, as `id|text|text`). The wavs keep
    flite's native rate (16 kHz for slt, rms, awb, kal16; 8 kHz for kal): `prepare` resamples.
    """
    flite = _find_flite()
    voices = flite_voices(flite)
    if voice not in voices:
        raise TokttsError(
            f"unknown flite voice {voice!r}: this flite has {', '.join(voices) or 'no voices'}"
        )
    if limit is not None and limit < 1:
        raise TokttsError(f"limit must be a positive number of sentences, got {limit}")
    if jobs < 1:
        raise TokttsError(f"jobs must be at least 1, got {jobs}")
    rows = packaged_transcripts("train") if texts is None else read_transcripts(texts)
    if limit is not None:
        rows = rows[:limit]
    if short is None:
        short = len(rows) * 4 // 25 if texts is None else 0  # 2,000 for the 12,500 sentences
    phrases = short_phrases(rows, short)
    if clash := {uid for uid, _ in rows} & {uid for uid, _ in phrases}:
        raise TokttsError(f"the texts already have an id {sorted(clash)[0]!r} of a short phrase: rename it, "
                          "or leave the short phrases out with --short 0")
    rows += phrases

    out = Path(out_dir).expanduser()
    wavs = out / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    # A rerun with another voice would silently mix two speakers in one corpus.
    marker = out / "synth-voice.txt"
    if marker.is_file() and (old := marker.read_text(encoding="utf-8").strip()) != voice:
        raise TokttsError(
            f"{out} was synthesized with voice {old!r}, not {voice!r}: "
            f"use another --out, or delete {out} to start over"
        )
    _atomic_write_text(marker, voice + "\n")
    for stale in wavs.glob(".*.tmp.*"):  # left by an interrupted run
        stale.unlink(missing_ok=True)

    todo = [(uid, text) for uid, text in rows if not (wavs / f"{uid}.wav").is_file()]
    if len(todo) < len(rows):
        logger.info("%s: %d of %d wavs already there, synthesizing the other %d",
                    out, len(rows) - len(todo), len(rows), len(todo))
    failures: dict[str, str] = {}
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"flite {voice}",
               unit="utt", disable=not progress)
    # Threads suffice: each one only waits on its flite process.
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(_synth_one, flite, voice, uid, text, wavs): uid for uid, text in todo}
        for future in as_completed(futures):
            if (why := future.result()) is not None:
                failures[futures[future]] = why
                bar.set_postfix(failed=len(failures))
            bar.update(1)
    finally:
        # On Ctrl-C, drop the queued sentences instead of synthesizing them all before exiting.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()

    done = [(uid, text) for uid, text in rows if (wavs / f"{uid}.wav").is_file()]
    if not done:
        first = next(iter(failures.items()), ("", "no sentence"))
        raise TokttsError(
            f"flite produced no wav in {wavs} ({len(failures)} failures, first {first[0]}: "
            f"{first[1]}): check that `flite -voice {voice} -t hello -o /tmp/x.wav` works"
        )
    _atomic_write_text(out / "metadata.csv", "".join(f"{u}|{t}|{t}\n" for u, t in done))
    if failures:
        uid, why = next(iter(failures.items()))
        logger.warning(
            "flite failed on %d of %d sentences, left out of %s (first: %s: %s); rerun to retry them",
            len(failures), len(rows), out / "metadata.csv", uid, why,
        )
    _, rate = _wav_frames(wavs / f"{done[0][0]}.wav")
    logger.info("%s: %d utterances, voice %s, %d Hz", out, len(done), voice, rate)
    return out


# ----------------------------------------------------------------------------- download


def _is_corpus(directory: Path) -> bool:
    return (directory / "metadata.csv").is_file() and (directory / "wavs").is_dir()


def _archive_stem(name: str) -> str:
    for suffix in (".tar.bz2", ".tar.gz", ".tar.xz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _network_error(url: str, part: Path, reason: object) -> TokttsError:
    if isinstance(reason, urllib.error.HTTPError):
        reason = f"HTTP {reason.code} {reason.reason}"
    elif isinstance(reason, urllib.error.URLError):
        reason = reason.reason
    size = part.stat().st_size if part.exists() else 0
    kept = f"{size:,} bytes are kept in {part}; " if size else ""
    one_line = " ".join(str(reason).split()) or type(reason).__name__
    return TokttsError(
        f"download of {url} failed: {one_line}; {kept}rerun the same command to resume"
    )


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header such as `bytes 100-199/2000`."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start, total = m.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _fetch(url: str, part: Path, progress: bool) -> None:
    """Download `url` into `part`, resuming from the bytes `part` already has."""
    for _ in range(3):  # at most: a stale/oversized part dropped, then a fresh start
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "toktts"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S
            )
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # nothing left after `offset`: complete, or too long
                _, total = _content_range(e.headers.get("Content-Range"))
                e.close()
                if total == offset:
                    return
                logger.warning("%s is longer than %s; downloading again", part, url)
                part.unlink()
                continue
            raise _network_error(url, part, e) from None
        except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
            raise _network_error(url, part, e) from None

        with response:
            mode = "wb"
            if offset and response.status == 206:
                start, _ = _content_range(response.headers.get("Content-Range"))
                if start != offset:
                    logger.warning("server answered Range %d- with %s; downloading again",
                                   offset, response.headers.get("Content-Range"))
                    part.unlink()
                    continue
                mode = "ab"
            elif offset:
                # 200: the server ignored the Range header and sends the whole file again.
                logger.warning("server ignored the resume request; downloading %s from the start", url)
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else None
            with open(part, mode) as f, tqdm(
                total=total, initial=offset, desc=part.name.removesuffix(".part"), unit="B",
                unit_scale=True, unit_divisor=1024, disable=not progress,
            ) as bar:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        f.close()
                        raise _network_error(url, part, e) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        size = part.stat().st_size
        if total is not None and size != total:
            # http.client returns b"" (no error) when the connection drops early.
            raise _network_error(url, part, f"connection closed after {size:,} of {total:,} bytes")
        return
    raise _network_error(url, part, "the server's answers to resume requests are inconsistent")


def _sha256(path: Path, progress: bool) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, desc="sha256", unit="B",
                                     unit_scale=True, unit_divisor=1024, disable=not progress) as bar:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _extract(archive: Path, final: Path, progress: bool) -> None:
    """Extract `archive` into a hidden staging directory, then rename its corpus to `final`.

    The rename is the commit point: `final` exists only once extraction finished. The "data"
    filter refuses members that would land outside the staging directory (`../x`, links
    pointing out, devices), so a hostile archive cannot write anywhere else.
    """
    if not hasattr(tarfile, "data_filter"):
        raise TokttsError(
            "safe tar extraction needs tarfile filters (Python >= 3.10.12 or >= 3.11.4): "
            "upgrade Python, or extract the archive yourself"
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.extracting-", dir=final.parent))
    try:
        # Stream mode ("r|*"): a seekable .tar.bz2 seeks backwards per member, and bz2 replays
        # the whole stream from the start for each backward seek.
        with open(archive, "rb") as raw, tqdm.wrapattr(
            raw, "read", total=archive.stat().st_size, desc=f"extract {archive.name}",
            unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
        ) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            tar.extractall(staging, filter="data")
        root = staging if _is_corpus(staging) else None
        if root is None:
            inside = [d for d in staging.iterdir() if d.is_dir() and _is_corpus(d)]
            root = inside[0] if len(inside) == 1 else None
        if root is None:
            raise TokttsError(
                f"{archive} holds no corpus folder (metadata.csv and wavs/): "
                "check the URL; it must be an LJSpeech-layout archive"
            )
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()  # an empty folder the user made for it
        os.replace(root, final)
    except tarfile.FilterError as e:
        raise TokttsError(f"refusing to extract {archive}: unsafe member ({e}); "
                          "delete it and check the URL") from None
    except (tarfile.TarError, EOFError) as e:
        raise TokttsError(f"cannot extract {archive}: {e}; delete it and rerun to download "
                          "it again") from None
    except OSError as e:
        raise TokttsError(f"cannot extract {archive} into {final.parent}: {e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_ljspeech(
    out_dir: str | Path,
    url: str = LJSPEECH_URL,
    sha256: str | None = LJSPEECH_SHA256,
    progress: bool = True,
) -> Path:
    """Download and extract LJSpeech-1.1 into `out_dir`; returns the corpus directory.

    Resumable at every step: the archive downloads to `<name>.part` and a rerun resumes it with
    an HTTP Range request; it is renamed to `<name>` only once its sha256 matches (when `sha256`
    is given; a mismatch deletes it); extraction goes to a hidden folder renamed at the end. A
    complete corpus folder (metadata.csv and wavs/) is returned at once without any network
    access. The archive is deleted after a successful extraction.
    """
    out = Path(out_dir).expanduser()
    name = Path(urllib.parse.urlsplit(url).path).name or "corpus.tar.bz2"
    final = out / _archive_stem(name)
    if _is_corpus(final):
        logger.info("%s is already complete", final)
        return final
    if final.exists() and not (final.is_dir() and not any(final.iterdir())):
        raise TokttsError(
            f"{final} exists but is not a complete corpus (no metadata.csv or wavs/): "
            "move it away and rerun"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TokttsError(f"cannot create {out}: {e}") from None
    for stale in out.glob(f".{final.name}.extracting-*"):  # an interrupted extraction
        shutil.rmtree(stale, ignore_errors=True)

    archive = out / name
    part = out / f"{name}.part"
    if not archive.is_file():  # else: downloaded (and verified) before, extraction interrupted
        _fetch(url, part, progress)
        if sha256:
            got = _sha256(part, progress)
            if got != sha256.lower():
                part.unlink()
                raise TokttsError(
                    f"{url} downloaded with sha256 {got}, expected {sha256}: the file is "
                    "corrupt or changed upstream; the download was deleted, rerun to try again"
                )
        else:
            logger.warning("no sha256 given: %s is not verified, only its contents are checked", url)
        os.replace(part, archive)
    _extract(archive, final, progress)
    n = len(read_corpus(final))  # proves the metadata parses
    archive.unlink()
    logger.info("%s: %d utterances", final, n)
    return final
