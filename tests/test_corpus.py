"""Corpora: reading the LJSpeech layout, synthesizing with the real flite, downloading over real HTTP.

The download tests serve hand-made LJSpeech-like tarballs from an `http.server` on 127.0.0.1 (a
thread, an ephemeral port) that honours Range requests, so resuming, verification and safe
extraction run exactly as they would against data.keithito.com, offline.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import logging
import re
import socket
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toktts.corpus import (
    Utterance,
    download_ljspeech,
    packaged_transcripts,
    read_corpus,
    read_transcripts,
    short_phrases,
    synth_corpus,
)
from toktts.errors import TokttsError

# ----------------------------------------------------------------------------- read_corpus


def test_read_corpus_columns_and_malformed_lines(tmp_path, caplog):
    (tmp_path / "metadata.csv").write_text(
        'LJ1|Dr. Smith said "hi.|Doctor Smith said "hi.\n'  # 3 columns, an unbalanced quote
        "LJ2|Two columns only\r\n"  # 2 columns, a CRLF ending
        "LJ3|Empty third column|\n"  # empty normalized text: falls back to the text
        "\n"  # blank: ignored, not counted
        "no separator at all\n"  # 1 column
        "LJ4|a|b|c\n"  # 4 columns: a `|` inside the text is not allowed
        "../evil|path in the id\n"
        "LJ1|repeated id\n"
        "LJ5|   \n",  # empty text
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="toktts.corpus"):
        utts = read_corpus(tmp_path)
    assert utts == [
        Utterance("LJ1", 'Dr. Smith said "hi.', 'Doctor Smith said "hi.', tmp_path / "wavs/LJ1.wav"),
        Utterance("LJ2", "Two columns only", "Two columns only", tmp_path / "wavs/LJ2.wav"),
        Utterance("LJ3", "Empty third column", "Empty third column", tmp_path / "wavs/LJ3.wav"),
    ]
    assert "skipped 5 malformed line(s)" in caplog.text
    assert "line 5: 1 columns" in caplog.text


def test_read_corpus_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(TokttsError, match=r"nowhere does not exist.*toktts corpus synth --out"):
        read_corpus(tmp_path / "nowhere")
    with pytest.raises(TokttsError, match=r"no metadata.csv in corpus directory .*toktts corpus download"):
        read_corpus(tmp_path)
    (tmp_path / "metadata.csv").write_text("only|too|many|columns\n\n", encoding="utf-8")
    with pytest.raises(TokttsError, match=r"metadata.csv has no valid"):
        read_corpus(tmp_path)
    (tmp_path / "metadata.csv").write_bytes(b"LJ1|caf\xe9\n")  # latin-1, not UTF-8
    with pytest.raises(TokttsError, match=r"is not UTF-8"):
        read_corpus(tmp_path)


def test_read_transcripts_prefers_the_normalized_column(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("a|In 1865.|In eighteen sixty-five.\nb|Plain.\n", encoding="utf-8")
    assert read_transcripts(path) == [("a", "In eighteen sixty-five."), ("b", "Plain.")]
    with pytest.raises(TokttsError, match=r"missing.txt does not exist"):
        read_transcripts(tmp_path / "missing.txt")


def test_packaged_transcripts_are_disjoint_splits():
    train, val = packaged_transcripts("train"), packaged_transcripts("val")
    assert len(train) == 12_500 and len(val) == 100
    assert not {i for i, _ in train} & {i for i, _ in val}
    assert all(text and "|" not in text for _, text in train + val)
    with pytest.raises(TokttsError, match=r"'test'.*'train' or 'val'"):
        packaged_transcripts("test")


# ----------------------------------------------------------------------------- synth_corpus

SENTENCES = {
    "s1": "Hello world.",
    "s2": 'She said "yes" and left.',
    "s3": "-o is not an option here.",  # would confuse flite if passed as an argument
    "s4": "The cat sat on the mat.",
}


def _texts_file(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("".join(f"{i}|{t}\n" for i, t in SENTENCES.items()), encoding="utf-8")
    return path


def test_synth_corpus_with_real_flite_and_resume(tmp_path):
    out = tmp_path / "corpus"
    assert synth_corpus(out, texts=_texts_file(tmp_path), jobs=2, progress=False) == out

    assert (out / "metadata.csv").read_text(encoding="utf-8") == "".join(
        f"{i}|{t}|{t}\n" for i, t in SENTENCES.items()
    )
    utts = read_corpus(out)
    assert [u.id for u in utts] == list(SENTENCES)
    for u in utts:
        audio, rate = sf.read(u.wav_path)
        assert rate == 16_000  # flite's native rate for slt, kept as is
        assert audio.ndim == 1 and len(audio) > 0.3 * rate
        assert np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence
    assert sorted(p.name for p in (out / "wavs").iterdir()) == [f"{i}.wav" for i in SENTENCES]

    # Rerun after an "interruption": one wav gone, a stale temp file left behind.
    mtimes = {u.id: u.wav_path.stat().st_mtime_ns for u in utts}
    (out / "wavs/s3.wav").unlink()
    (out / "wavs/.s4.abc.tmp.wav").write_bytes(b"half a wav")
    synth_corpus(out, texts=_texts_file(tmp_path), jobs=2, progress=False)
    assert (out / "wavs/s3.wav").is_file()
    assert not (out / "wavs/.s4.abc.tmp.wav").exists()
    for uid in ("s1", "s2", "s4"):  # complete wavs are not synthesized again
        assert (out / f"wavs/{uid}.wav").stat().st_mtime_ns == mtimes[uid]
    assert [u.id for u in read_corpus(out)] == list(SENTENCES)

    with pytest.raises(TokttsError, match=r"synthesized with voice 'slt', not 'rms'"):
        synth_corpus(out, voice="rms", texts=_texts_file(tmp_path), progress=False)


def test_synth_corpus_defaults_to_train_transcripts(tmp_path):
    out = synth_corpus(tmp_path / "c", limit=1, progress=False)
    [utt] = read_corpus(out)
    assert (utt.id, utt.text) == packaged_transcripts("train")[0]
    assert utt.id not in {i for i, _ in packaged_transcripts("val")}


def test_synth_corpus_adds_short_phrases_to_the_packaged_sentences(tmp_path):
    out = synth_corpus(tmp_path / "c", limit=13, progress=False)  # 13 x 16% = 2 short phrases
    rows = [(u.id, u.text) for u in read_corpus(out)]
    assert rows[:13] == packaged_transcripts("train")[:13]
    assert [t for _, t in rows[13:]] == ["Hi.", "Hello."] and all(i.startswith("SHORT-") for i, _ in rows[13:])
    assert all(sf.info(u.wav_path).duration < 1.5 for u in read_corpus(out)[13:])
    # An evaluation corpus holds its sentences only; `short` says otherwise.
    texts = _texts_file(tmp_path)
    assert len(read_corpus(synth_corpus(tmp_path / "v", texts=texts, progress=False))) == len(SENTENCES)
    assert len(read_corpus(synth_corpus(tmp_path / "w", texts=texts, short=3, progress=False))) == len(SENTENCES) + 3
    assert len(read_corpus(synth_corpus(tmp_path / "s", limit=13, short=0, progress=False))) == 13
    # A text under a short phrase's id would be two wavs in one: refused before any work.
    clash = tmp_path / "clash.txt"
    clash.write_text(f"{rows[13][0]}|Some sentence of one's own.\n")
    with pytest.raises(TokttsError, match=rf"already have an id '{rows[13][0]}'.*--short 0"):
        synth_corpus(tmp_path / "x", texts=clash, short=1, progress=False)


def test_short_phrases_are_windows_of_the_sentences(caplog):
    rows = packaged_transcripts("train")[:500]
    phrases = short_phrases(rows, 300)
    assert phrases == short_phrases(rows, 300)  # deterministic
    assert phrases[:100] == short_phrases(rows, 100)  # more of them adds to the same list
    # Each id names its text: a wav made for one phrase is never listed under another.
    assert all(i == "SHORT-" + hashlib.sha1(t.encode()).hexdigest()[:10] for i, t in phrases)
    texts = [t for _, t in phrases]
    words = [" ".join(re.findall(r"[a-z0-9'-]+", t.lower())) for t in texts]
    assert len(set(words)) == 300 and texts[0] == "Hi."  # no two of the same words ("The." / "The?")
    sentences = [" " + " ".join(re.findall(r"[a-z0-9'-]+", t.lower())) + " " for _, t in rows]
    windows = texts[60:]  # past the greetings
    for text in windows:
        assert text[-1] in ".?!" and 1 <= len(text.split()) <= 4 and text[0] == text[0].upper()
        assert any(f" {text[:-1].lower()} " in sentence for sentence in sentences), text
    assert {t[-1] for t in windows} == {".", "?", "!"}
    assert short_phrases(rows, 0) == [] and short_phrases([], 5)[-1][1] == "Hey."
    with caplog.at_level(logging.WARNING):
        few = short_phrases([("a", "Seven eight.")], 60)  # 47 greetings and 3 windows at most
    assert len(few) == 50 and "only 50 distinct short phrases in 1 sentences, not the 60" in caplog.text
    with pytest.raises(TokttsError, match="--short must be 0 or more short phrases, got -1"):
        short_phrases(rows, -1)


def test_synth_corpus_errors(tmp_path, monkeypatch):
    texts = _texts_file(tmp_path)
    # flite itself falls back to its default voice on an unknown name; we must not.
    with pytest.raises(TokttsError, match=r"unknown flite voice 'nobody': this flite has .*slt"):
        synth_corpus(tmp_path / "c", voice="nobody", texts=texts, progress=False)
    with pytest.raises(TokttsError, match=r"limit must be a positive"):
        synth_corpus(tmp_path / "c", texts=texts, limit=0, progress=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without flite
    with pytest.raises(TokttsError, match=r"flite is not installed.*apt-get install flite"):
        synth_corpus(tmp_path / "c", texts=texts, progress=False)
    assert not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------- download


@dataclass
class Server:
    """What the loopback file server serves, how it misbehaves, and what it was asked."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    honour_range: bool = True
    cut_after: int | None = None  # send only this many body bytes, then drop the connection


@pytest.fixture
def server():
    state = Server()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and state.honour_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: state.cut_after])

        def log_message(self, *args):  # keep pytest output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _wav_bytes(seed: int) -> bytes:
    # Noise, so the archive stays larger than the cut-off points used below after bz2.
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, 4410).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, audio, 22050, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _tarball(extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A small LJSpeech-1.1.tar.bz2: LJSpeech-1.1/{metadata.csv, wavs/*.wav}, then `extra`."""
    members = {
        "LJSpeech-1.1/metadata.csv": b"LJ001-0001|Printing, in 1 sense|Printing, in one sense\n"
        b"LJ001-0002|in being comparatively modern.|in being comparatively modern.\n",
        "LJSpeech-1.1/wavs/LJ001-0001.wav": _wav_bytes(1),
        "LJSpeech-1.1/wavs/LJ001-0002.wav": _wav_bytes(2),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def _serve(server: Server, data: bytes) -> tuple[str, str]:
    server.files["/LJSpeech-1.1.tar.bz2"] = data
    return f"{server.base}/LJSpeech-1.1.tar.bz2", hashlib.sha256(data).hexdigest()


def _assert_ljspeech_like(corpus: Path) -> None:
    assert corpus.name == "LJSpeech-1.1"
    utts = read_corpus(corpus)
    assert [u.id for u in utts] == ["LJ001-0001", "LJ001-0002"]
    assert utts[0].normalized_text == "Printing, in one sense"
    for u in utts:
        assert sf.info(u.wav_path).samplerate == 22050


def _leftovers(out: Path) -> list[str]:
    """Anything in out/ besides a finished corpus: parts, archives, staging folders."""
    return sorted(p.name for p in out.iterdir() if p.name != "LJSpeech-1.1")


def test_download_verify_extract_and_skip_when_complete(tmp_path, server):
    url, sha = _serve(server, _tarball())
    corpus = download_ljspeech(tmp_path, url=url, sha256=sha, progress=False)
    assert corpus == tmp_path / "LJSpeech-1.1"
    _assert_ljspeech_like(corpus)
    assert _leftovers(tmp_path) == []  # the archive is deleted once extracted
    assert server.requests == [("/LJSpeech-1.1.tar.bz2", None)]
    # Complete already: returns at once, without asking the (now unknown) URL.
    gone = f"{server.base}/gone/LJSpeech-1.1.tar.bz2"
    again = download_ljspeech(tmp_path, url=gone, sha256=sha, progress=False)
    assert again == corpus and len(server.requests) == 1


def test_download_resumes_a_truncated_part_with_range(tmp_path, server):
    data = _tarball()
    url, sha = _serve(server, data)
    (tmp_path / "LJSpeech-1.1.tar.bz2.part").write_bytes(data[:3000])
    _assert_ljspeech_like(download_ljspeech(tmp_path, url=url, sha256=sha, progress=False))
    assert server.requests == [("/LJSpeech-1.1.tar.bz2", "bytes=3000-")]
    assert _leftovers(tmp_path) == []


def test_download_interrupted_then_rerun(tmp_path, server):
    url, sha = _serve(server, _tarball())
    server.cut_after = 2000
    cut = r"failed: connection closed after 2,000 of .*rerun the same command to resume"
    with pytest.raises(TokttsError, match=cut):
        download_ljspeech(tmp_path, url=url, sha256=sha, progress=False)
    assert (tmp_path / "LJSpeech-1.1.tar.bz2.part").stat().st_size == 2000
    assert not (tmp_path / "LJSpeech-1.1").exists()
    server.cut_after = None
    _assert_ljspeech_like(download_ljspeech(tmp_path, url=url, sha256=sha, progress=False))
    assert server.requests[-1] == ("/LJSpeech-1.1.tar.bz2", "bytes=2000-")


def test_download_restarts_when_the_server_ignores_range(tmp_path, server):
    url, sha = _serve(server, _tarball())
    server.honour_range = False
    (tmp_path / "LJSpeech-1.1.tar.bz2.part").write_bytes(b"not the start of that file" * 40)
    # The sha256 only matches if the stale bytes were dropped rather than appended to.
    _assert_ljspeech_like(download_ljspeech(tmp_path, url=url, sha256=sha, progress=False))
    assert server.requests == [("/LJSpeech-1.1.tar.bz2", "bytes=1040-")]


def test_download_bad_sha256_leaves_nothing(tmp_path, server):
    url, _ = _serve(server, _tarball())
    with pytest.raises(TokttsError, match=r"sha256 [0-9a-f]{64}, expected 0{64}.*rerun"):
        download_ljspeech(tmp_path, url=url, sha256="0" * 64, progress=False)
    assert _leftovers(tmp_path) == [] and not (tmp_path / "LJSpeech-1.1").exists()


def test_download_network_errors_are_one_line(tmp_path, server):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/LJSpeech-1.1.tar.bz2"
    with pytest.raises(TokttsError, match=r"rerun the same command to resume") as e:
        download_ljspeech(tmp_path, url=url, progress=False)
    assert url in str(e.value) and "refused" in str(e.value).lower() and "\n" not in str(e.value)
    with pytest.raises(TokttsError, match=r"HTTP 404"):
        download_ljspeech(tmp_path, url=f"{server.base}/missing.tar.bz2", progress=False)


def _traversal() -> tarfile.TarInfo:
    info = tarfile.TarInfo("LJSpeech-1.1/../../evil.txt")
    info.size = 4
    return info


def _absolute_symlink() -> tarfile.TarInfo:
    info = tarfile.TarInfo("LJSpeech-1.1/wavs/link.wav")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info


@pytest.mark.parametrize("member", [_traversal, _absolute_symlink])
def test_download_refuses_unsafe_members(tmp_path, server, member):
    out = tmp_path / "out"
    url, sha = _serve(server, _tarball(extra=[member()]))
    with pytest.raises(TokttsError, match=r"refusing to extract .*unsafe member"):
        download_ljspeech(out, url=url, sha256=sha, progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (out / "evil.txt").exists()
    assert not (out / "LJSpeech-1.1").exists()
    assert _leftovers(out) == ["LJSpeech-1.1.tar.bz2"]  # kept (verified) so it can be inspected
