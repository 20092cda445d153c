"""`toktts evaluate`: an honest measure of how well a model speaks.

    toktts evaluate --model DIR --corpus DIR [--split val|all] [--limit N] [--out DIR]
                    [--asr pocketsphinx|whisper:PATH] [--seed N] [--batch-size N]
                    [--device DEV] [--asr-jobs N]

For every sentence of the chosen split the model reads the corpus text (batched, seeded, the
model's own sampling settings), and the same ASR transcribes four recordings of it:

    generated      what the model said
    teacher_forced what the model knows: at every step, the code it ranks first when the past it
                   reads is the recording's own (codec-encoded) rather than its own samples.
                   Between it and `generated` lies exposure bias -- errors of its own that the
                   model builds on; between it and `resynthesized`, what it has not learned yet
    resynthesized  the corpus recording through the model's codec (encode, decode): the best the
                   model could ever sound with this codec -- its ceiling
    reference      the corpus recording itself: the ceiling of the ASR on this voice

so every CER is read beside its two ceilings: a generated CER of 30% is good when the
resynthesized one is 25%, and says little about the model when the reference is already 60%.
Reference text and transcripts are scored the same way: `toktts.text.normalize` (numbers,
abbreviations and case become words the same way on both sides), then punctuation dropped and
spaces collapsed. CER/WER totals are corpus-level (all edits / all reference characters or words).

Also reported: how generation stopped (runaway rate: the share of sentences that hit the length
limit without emitting EOS; generated/reference duration ratio) and speed, as real-time factors
(seconds of compute per second of audio) of token generation and of codec decoding, separately,
measured around `TTS.generate_tokens` and `TTS.decode` after one warm-up call. Generation records
the first decoder layer's cross-attention for the alignment image, and its RTF includes that.
The RTF is that of batched generation at `--batch-size` on the device used, on whatever else the
machine was running at the time.

Splits (`--split`):
  all   every row of the corpus's metadata.csv.
  val   sentences the model never trained on, picked by the first rule that applies:
        1. `<corpus>/val.txt` exists: the ids it lists (one `id` or `id|text` a line);
        2. the model was trained on this very corpus (its config's data.corpus is this directory):
           the rows its training held out: the model directory's val_ids.txt (written by
           `toktts train`), else the split `toktts prepare` makes of the corpus as it is now
           (data.val_ids, or the seeded data.val_size split, which moves if rows were added);
        3. otherwise the 100 packaged LJSpeech validation ids (toktts/data/ljspeech/val.txt) found
           in the corpus: a real LJSpeech copy, or a flite corpus made from them with
           `toktts corpus synth --out DIR --texts src/toktts/data/ljspeech/val.txt`.
        Then, wherever the model's training corpus can still be read, any row whose id or text
        the model trained on is dropped (with a warning), whatever rule picked it.

Writes to `--out` (default `<model>/eval-<split>`):
  metrics.json   totals and one row per sentence (transcripts, CER/WER, stop reason, durations)
  report.html    the metrics, and per sentence the text, the four transcripts with their CER and
                 WER, audio players, spectrograms and the cross-attention alignment; no external
                 resource: audio and images are embedded as data URIs while each kind totals under
                 32 MB, and otherwise played and shown from the files beside the page
  audio/         <id>.<kind>.wav for each of the four (codec rate)
  figures/       <id>.png: the four spectrograms on one time axis, and the alignment
Everything goes to disk as it is made, so memory stays flat however large the split.

ASR: `pocketsphinx` (offline, its bundled US English model, 16 kHz) or `whisper:PATH`, a local
Whisper checkpoint directory read with transformers. Compare CERs only under the same ASR.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from toktts.asr import error_rates, make_asr, score_text
from toktts.config import check_value
from toktts.corpus import Utterance, ids_in, read_corpus
from toktts.errors import TokttsError

if TYPE_CHECKING:  # torch and the model load lazily: ASR worker processes import this module
    from toktts.config import Config
    from toktts.inference import TTS

log = logging.getLogger(__name__)

SPLITS = ("val", "all")
KINDS = ("generated", "teacher_forced", "resynthesized", "reference")
EMBED_LIMIT_BYTES = 32 * 2**20  # above this much wav, report.html links the files instead
_PACKAGED_VAL = "data/ljspeech/val.txt"


# ----------------------------------------------------------------------------- splits


def _same_dir(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _model_split(cfg: Config, held_out: list[str] | None = None) -> tuple[list, list] | None:
    """(train, val) items of the model's training corpus: val the `held_out` ids its training
    recorded, or else split as `prepare` splits them now; None when that corpus is no longer
    readable here (moved, another machine)."""
    from toktts import data

    corpus = Path(cfg.data.corpus) if cfg.data.corpus else None
    if corpus is None or not (corpus / "metadata.csv").is_file():
        return None
    try:
        items = data._read_items(cfg, dict.fromkeys(data.SKIPS, 0))
        if held_out is not None:  # rows added since are counted as trained on: never wrongly held out
            return data.hold_out(items, set(held_out))
        return data._split(cfg, items)
    except TokttsError as e:  # e.g. its data.val_ids file is gone
        log.info("cannot reproduce the model's train/val split (%s)", e)
        return None


def split_rows(corpus_dir: str | Path, split: str, cfg: Config | None = None,
               held_out: list[str] | None = None) -> tuple[list[Utterance], str]:
    """The corpus rows of `split` and the rule that chose them (see the module docstring);
    `held_out`: the ids the model's training held out, where its directory says."""
    if split not in SPLITS:
        raise TokttsError(f"unknown split {split!r}: use 'val' (never trained on) or 'all'")
    rows = read_corpus(corpus_dir)
    if split == "all":
        return rows, "all: every row of metadata.csv"
    corpus = Path(corpus_dir).expanduser()
    model_split = _model_split(cfg, held_out) if cfg is not None else None
    if (corpus / "val.txt").is_file():
        ids = ids_in((corpus / "val.txt").read_text(encoding="utf-8-sig"))
        rule = f"val: the ids listed in {corpus / 'val.txt'}"
    elif cfg is not None and cfg.data.corpus and _same_dir(cfg.data.corpus, corpus):
        if model_split is None:
            raise TokttsError(
                f"cannot tell which rows of {corpus} the model held out from training: add a val.txt of ids "
                "to the corpus, or evaluate on another corpus (e.g. `toktts corpus synth --out DIR --texts "
                "src/toktts/data/ljspeech/val.txt`)"
            )
        ids = {it.id for it in model_split[1]}
        rule = "val: the rows the model's training held out" + (" (its val_ids.txt)" if held_out is not None else "")
    else:
        text = (resources.files("toktts") / _PACKAGED_VAL).read_text(encoding="utf-8")
        ids = ids_in(text)
        rule = "val: the packaged LJSpeech validation ids (toktts/data/ljspeech/val.txt) in the corpus"
    chosen = [u for u in rows if u.id in ids]
    if model_split is not None and chosen:
        trained = model_split[0]
        seen_ids, seen_texts = {it.id for it in trained}, {score_text(it.text) for it in trained}
        kept = [u for u in chosen if u.id not in seen_ids and score_text(u.normalized_text) not in seen_texts]
        if len(kept) < len(chosen):
            log.warning("dropped %d of %d %s rows: the model trained on them (%s)",
                        len(chosen) - len(kept), len(chosen), split, cfg.data.corpus)
            rule += f"; {len(chosen) - len(kept)} rows the model trained on dropped"
        if not kept:
            raise TokttsError(
                f"every {split} row of {corpus} ({len(chosen)}) was in the model's training data: "
                "evaluate on sentences it never saw, e.g. a corpus from "
                "`toktts corpus synth --out DIR --texts src/toktts/data/ljspeech/val.txt`"
            )
        chosen = kept
    if not chosen:
        raise TokttsError(
            f"corpus {corpus} has no rows of split {split!r} ({rule}): make a validation corpus with "
            "`toktts corpus synth --out DIR --texts src/toktts/data/ljspeech/val.txt`, add a val.txt of ids "
            "to the corpus, or use --split all"
        )
    return chosen, rule


# ----------------------------------------------------------------------------- report pieces


def _wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def _log_spectrogram(audio: np.ndarray) -> np.ndarray:
    """(frequency, time) magnitude in dB, 80 dB of range below the peak."""
    n_fft, hop = 1024, 256
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop] * np.hanning(n_fft)
    db = 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)).T + 1e-6)
    return np.maximum(db, db.max() - 80)


def _figure_png(audios: dict[str, np.ndarray], rate: int, attention: np.ndarray | None) -> bytes:
    """Spectrograms of the recordings on one time axis, and the alignment."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(8, 9), dpi=64, layout="constrained")
    axes = fig.subplots(len(KINDS) + 1, 1)
    longest = max(max(len(a) for a in audios.values()), 1) / rate
    for ax, kind in zip(axes, KINDS):
        spec = _log_spectrogram(audios[kind])
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                  extent=(0, max(len(audios[kind]), 1) / rate, 0, rate / 2000))
        ax.set_xlim(0, longest)
        ax.set_ylabel("kHz")
        ax.set_title(kind, fontsize=9, loc="left")
    axes[-2].set_xlabel("seconds")
    if attention is None:  # spoken in chunks: no one alignment for the sentence
        axes[-1].set_axis_off()
        axes[-1].set_title("cross-attention: not drawn (spoken in chunks)", fontsize=9, loc="left")
    else:
        axes[-1].imshow(attention, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
        axes[-1].set_title("cross-attention, decoder layer 1, mean over heads", fontsize=9, loc="left")
        axes[-1].set_xlabel("decoder step")
        axes[-1].set_ylabel("text token")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- evaluate


@dataclass
class _Sentence:
    utt: Utterance
    spoken: str = ""
    stop_reason: str = ""
    frames: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    transcripts: dict[str, str] = field(default_factory=dict)
    clicks: dict[str, bool] = field(default_factory=dict)  # toktts.audio.has_click, per kind


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _resynthesize(tts: TTS, refs: list[np.ndarray]) -> tuple[list[np.ndarray], Any, Any]:
    """The recordings through the codec: encode, decode (one padded batch). Returns the audio and
    the codes (B, K, T) and frame counts (B,)."""
    import torch

    lengths = torch.tensor([len(a) for a in refs])
    wav = torch.zeros(len(refs), int(lengths.max()))
    for b, a in enumerate(refs):
        wav[b, : len(a)] = torch.from_numpy(a)
    with torch.inference_mode():
        codes, frames = tts.codec.encode(wav.to(tts.device), lengths.to(tts.device))  # (B, K, T), (B,)
        audio = tts.codec.decode(codes, frames).float().cpu().numpy()
    hop = tts.codec.sample_rate // tts.codec.frame_rate
    return [audio[b, : min(int(frames[b]) * hop, len(refs[b]))] for b in range(len(refs))], codes, frames


def resynthesize_and_teacher_force(tts: TTS, refs: list[np.ndarray], spoken: list[str]
                                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The recordings (at the codec's rate) through the codec, and the model's teacher-forced
    choices on their codes decoded (`TTS.teacher_forced`), cut the same way."""
    resynthesized, codes, frames = _resynthesize(tts, refs)
    forced = tts.decode(tts.teacher_forced(spoken, codes, frames), frames)
    return resynthesized, [f[: len(r)].astype(np.float32) for f, r in zip(forced, resynthesized)]


def _synthesize_all(
    tts: TTS, sentences: list[_Sentence], out: Path, seed: int, batch_size: int, progress: bool,
    chunked: bool = False,
) -> dict[str, float]:
    """Generate, decode and resynthesize every sentence; write the wavs and the figures to `out`
    (nothing stays in memory: a whole LJSpeech evaluates in flat memory). `chunked`: each
    sentence is spoken as `TTS.synthesize` speaks it (cut into chunks of the model's
    generate.chunk_chars, joined with pauses), without retries.
    Returns the seconds spent in token generation and in codec decoding (chunked: both in
    "generate")."""
    from toktts.audio import has_click, load_audio, write_wav
    from toktts.phonemes import encode_texts

    rate, layout = tts.sampling_rate, tts.model.layout
    _, warm = tts.generate_tokens(["warm up."], seed=seed, max_seconds=0.2, need_weights=True)
    tts.decode(warm["tokens"], warm["frames"])  # one-time costs (allocations, kernel choice) go untimed
    timing = {"generate": 0.0, "decode": 0.0}
    # Similar lengths together: less padding, and no batch waits long on one long sentence.
    order = sorted(sentences, key=lambda s: len(s.utt.normalized_text))
    bar = tqdm(total=len(order), desc="synthesize", unit="utt", disable=not progress)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        _sync(tts.device)
        t0 = time.perf_counter()
        texts = [s.utt.normalized_text for s in batch]
        if chunked:
            said = tts.synthesize(texts, retries=0, seed=seed)
            _sync(tts.device)
            t1 = t2 = time.perf_counter()
            spoken = [tts.prepare_text(t) for t in texts]
            generated = [r["audio"] for r in said]
            frames = [r["frames"] for r in said]
            stops = [r["stop_reason"] for r in said]
            attention = None
        else:
            spoken, result = tts.generate_tokens(texts, seed=seed, need_weights=True)
            _sync(tts.device)
            t1 = time.perf_counter()
            generated = tts.decode(result["tokens"], result["frames"])
            t2 = time.perf_counter()
            frames = result["frames"].tolist()
            stops = ["eos" if stopped else "max_length" for stopped in result["stopped"].tolist()]
            attention = result["attention"].float().mean(1).cpu().numpy()  # (B, S, L), mean over heads
        timing["generate"] += t1 - t0
        timing["decode"] += t2 - t1

        read = [len(ids) for ids in encode_texts(spoken, tts.cfg.model.text_input)]  # text tokens
        refs = [load_audio(s.utt.wav_path, rate) for s in batch]
        resynthesized, forced = resynthesize_and_teacher_force(tts, refs, spoken)
        for b, s in enumerate(batch):
            s.spoken, s.frames, s.stop_reason = spoken[b], int(frames[b]), stops[b]
            audios = {"generated": generated[b].astype(np.float32), "teacher_forced": forced[b],
                      "resynthesized": resynthesized[b], "reference": refs[b]}
            for kind, audio in audios.items():
                write_wav(out / "audio" / f"{s.utt.id}.{kind}.wav", audio, rate)
                s.seconds[kind] = len(audio) / rate
                s.clicks[kind] = has_click(audio)
            if attention is None:
                png = _figure_png(audios, rate, None)
            else:
                steps = min(layout.n_steps(s.frames), attention.shape[1])
                png = _figure_png(audios, rate, attention[b, :steps, : read[b]].T)
            (out / "figures" / f"{s.utt.id}.png").write_bytes(png)
        bar.update(len(batch))
    bar.close()
    return timing


def evaluate(
    model_dir: str | None,
    corpus_dir: str,
    split: str = "val",
    limit: int | None = None,
    out_dir: str | None = None,
    asr: str = "pocketsphinx",
    seed: int = 0,
    progress: bool = True,
    batch_size: int = 8,
    device: str | None = None,
    asr_jobs: int | None = None,
    embed_audio: bool | None = None,
    sampling: dict | None = None,
    ceilings_from: str | None = None,
    precision: str | None = None,
    backend: str | None = None,
    chunk_chars: int | None = None,
    close_chunks: bool | None = None,
) -> dict:
    """Synthesize a corpus split, transcribe generated / teacher-forced / codec-resynthesized /
    reference audio with one ASR, and write `metrics.json`, `report.html`, `audio/` and `figures/` to `out_dir`.

    model_dir: a model directory (None: the bundled voice); out_dir defaults to
    `<model>/eval-<split>` (`./eval-<split>` for the bundled voice). embed_audio: None embeds the
    audio in report.html when the wavs total under 32 MB. asr_jobs: pocketsphinx processes
    (default: up to 4, one per core). sampling: temperature / top_k / top_p / cfg_scale / best_of
    to use instead of the model's defaults (None values are ignored; best_of, the best of N takes
    of each chunk by the ASR `say --best-of` uses, needs chunk_chars). ceilings_from: the metrics.json of an earlier
    evaluation on the same corpus, split and ASR with a model of the same codec, whose reference
    and resynthesis transcripts are reused instead of transcribed again (A/B runs of one voice
    share them). precision, backend: as `TTS.from_pretrained`'s. chunk_chars: speak each sentence
    as `toktts say` does, cut into chunks of at most that many characters (0: the model's
    `generate.chunk_chars`; at sentence ends, then clause marks, then between words) joined with
    pauses, but without retries; None generates
    each sentence whole (the teacher-forced audio is always whole). close_chunks: end every
    chunk cut inside a sentence with a full stop (True) or as cut (False) instead of as the
    model's `generate.close_chunks` says (None). Returns the metrics dict, plus the
    paths it wrote under "files". Raises TokttsError on bad input (see the module docstring).
    """
    from toktts.checkpoint import held_out_ids
    from toktts.devices import resolve_device
    from toktts.inference import TTS

    if batch_size < 1:
        raise TokttsError(f"batch size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise TokttsError(f"limit must be a positive number of sentences, got {limit}")
    started = time.perf_counter()
    overrides = {k: v for k, v in (sampling or {}).items() if v is not None}
    unknown = set(overrides) - {"temperature", "top_k", "top_p", "cfg_scale", "best_of"}
    if unknown:
        raise TokttsError(f"unknown sampling setting(s) {sorted(unknown)}; use temperature, top_k, top_p, cfg_scale, best_of")
    if chunk_chars:  # 0: the model's own chunk length
        overrides["chunk_chars"] = chunk_chars
    if close_chunks is not None:
        overrides["close_chunks"] = close_chunks
    overrides = {k: check_value(f"generate.{k}", v, k) for k, v in overrides.items()}
    if overrides.get("best_of", 1) != 1 and chunk_chars is None:
        raise TokttsError("best_of picks the best of N takes of each chunk, as `say` speaks: "
                          "give chunk_chars too (--chunk-chars N, 0 = the model's)")
    engine = make_asr(asr, str(resolve_device(device)), asr_jobs)  # a missing ASR model fails before any long work
    tts = TTS.from_pretrained(model_dir, device=device, precision=precision, backend=backend)
    tts.cfg.generate = replace(tts.cfg.generate, **overrides)
    rows, rule = split_rows(corpus_dir, split, tts.cfg, held_out_ids(tts.model_dir) if tts.model_dir else None)
    skipped = {"missing_wav": 0, "nothing_to_say": 0}
    usable = []
    for u in rows:
        if not u.wav_path.is_file():
            skipped["missing_wav"] += 1
        elif not score_text(u.normalized_text):
            skipped["nothing_to_say"] += 1
        else:
            usable.append(u)
    if any(skipped.values()):
        log.warning("skipped %s of the %d %s rows of %s", {k: v for k, v in skipped.items() if v},
                    len(rows), split, corpus_dir)
    if not usable:
        raise TokttsError(f"none of the {len(rows)} {split} rows of {corpus_dir} has both a wav and a text to say")
    usable = usable[:limit] if limit else usable
    out = Path(out_dir) if out_dir else (Path(model_dir) if model_dir else Path.cwd()) / f"eval-{split}"
    try:
        for sub in ("audio", "figures"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TokttsError(f"cannot create {str(out)!r}: {e.strerror}; choose another --out") from None

    sentences = [_Sentence(u) for u in usable]
    known = _ceiling_transcripts(ceilings_from, corpus_dir, split, engine.name, usable)
    timing = _synthesize_all(tts, sentences, out, seed, batch_size, progress, chunked=chunk_chars is not None)

    # The reference is transcribed from the corpus file itself, not from its codec-rate copy.
    todo = [(s, kind) for s in sentences for kind in KINDS if (s.utt.id, kind) not in known]
    wavs = [out / "audio" / f"{s.utt.id}.{kind}.wav" if kind != "reference" else s.utt.wav_path for s, kind in todo]
    with tqdm(total=len(wavs), desc=f"asr {engine.name}", unit="clip", disable=not progress) as bar:
        heard = dict(zip([(s.utt.id, kind) for s, kind in todo], engine.transcribe(wavs, bar.update)))
    heard |= known
    for s in sentences:
        s.transcripts = {kind: heard[s.utt.id, kind] for kind in KINDS}

    metrics = _metrics(sentences, timing, {
        "model": str(model_dir) if model_dir else "bundled voice", "corpus": str(corpus_dir), "split": split,
        "split_rule": rule, "asr": engine.name, "seed": seed, "batch_size": batch_size, "device": str(tts.device),
        "sampling": {k: getattr(tts.cfg.generate, k)
                     for k in ("temperature", "top_k", "top_p", "cfg_scale", "max_seconds")}
                    | {"chunk_chars": None if chunk_chars is None else tts.cfg.generate.chunk_chars,
                       "close_chunks": None if chunk_chars is None else tts.cfg.generate.close_chunks,
                       # whole sentences are one take each, whatever the model's generate.best_of
                       "best_of": 1 if chunk_chars is None else tts.cfg.generate.best_of},
        "skipped": skipped, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ceilings_from": ceilings_from,
    })
    metrics["totals"]["wall_seconds"] = round(time.perf_counter() - started, 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    _write_report(out, metrics, embed_audio)
    metrics["files"] = {"metrics": str(out / "metrics.json"), "report": str(out / "report.html"),
                        "audio": str(out / "audio")}
    return metrics


def _ceiling_transcripts(
    path: str | None, corpus_dir: str, split: str, asr: str, usable: list[Utterance]
) -> dict[tuple[str, str], str]:
    """(id, kind) -> transcript of the reference and resynthesis kinds from an earlier
    metrics.json, checked to come from the same corpus, split and ASR and to hold every id."""
    if not path:
        return {}
    try:
        earlier = json.loads(Path(path).read_text())
        rows = {r["id"]: r for r in earlier["sentences"]}
        same = (_same_dir(earlier["corpus"], corpus_dir), earlier["split"] == split, earlier["asr"] == asr)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TokttsError(f"--ceilings-from {path!r} is not a readable metrics.json ({e}); give one that "
                          "`toktts evaluate` wrote") from None
    if not all(same):
        raise TokttsError(f"--ceilings-from {path!r} measured another corpus, split or ASR; give one of "
                          f"{corpus_dir!r}, split {split}, {asr}")
    missing = [u.id for u in usable if u.id not in rows]
    if missing:
        raise TokttsError(f"--ceilings-from {path!r} lacks {len(missing)} of these sentences (e.g. {missing[0]}); "
                          "evaluate them in full once")
    return {(u.id, kind): rows[u.id][f"transcript_{kind}"] for u in usable for kind in ("resynthesized", "reference")}


def _metrics(sentences: list[_Sentence], timing: dict[str, float], info: dict) -> dict:
    rows = []
    for s in sentences:
        ref = score_text(s.utt.normalized_text)
        row = {"id": s.utt.id, "text": s.spoken, "scored_text": ref, "stop_reason": s.stop_reason,
               "frames": s.frames}
        for kind in KINDS:
            hyp = score_text(s.transcripts[kind])
            cer, wer = error_rates([ref], [hyp])
            row |= {f"transcript_{kind}": s.transcripts[kind], f"scored_{kind}": hyp,
                    f"cer_{kind}": round(cer, 4), f"wer_{kind}": round(wer, 4)}
        row |= {f"seconds_{kind}": round(s.seconds[kind], 3) for kind in KINDS}
        row["duration_ratio"] = round(s.seconds["generated"] / max(s.seconds["reference"], 1e-9), 3)
        row |= {f"click_{kind}": s.clicks[kind] for kind in KINDS}
        row |= {f"audio_{kind}": f"audio/{s.utt.id}.{kind}.wav" for kind in KINDS}
        row["figure"] = f"figures/{s.utt.id}.png"
        rows.append(row)
    totals: dict[str, Any] = {"sentences": len(rows)}
    for kind in KINDS:
        cer, wer = error_rates([r["scored_text"] for r in rows], [r[f"scored_{kind}"] for r in rows])
        totals[f"cer_{kind}"], totals[f"wer_{kind}"] = round(cer, 4), round(wer, 4)
    runaways = sum(r["stop_reason"] == "max_length" for r in rows)
    ratios = [r["duration_ratio"] for r in rows]
    generated = sum(s.seconds["generated"] for s in sentences)
    totals |= {
        "runaways": runaways,
        "runaway_rate": round(runaways / len(rows), 4),
        **{f"clicks_{kind}": sum(r[f"click_{kind}"] for r in rows) for kind in KINDS},
        "duration_ratio_mean": round(statistics.fmean(ratios), 3),
        "duration_ratio_median": round(statistics.median(ratios), 3),
        "seconds_generated": round(generated, 2),
        "seconds_reference": round(sum(s.seconds["reference"] for s in sentences), 2),
        "seconds_generating": round(timing["generate"], 3),
        "seconds_decoding": round(timing["decode"], 3),
        "rtf_generate": round(timing["generate"] / max(generated, 1e-9), 4),
        "rtf_decode": round(timing["decode"] / max(generated, 1e-9), 4),
    }
    return {**info, "totals": totals, "sentences": rows}


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:64em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
section{border-top:2px solid #ddd;margin-top:1.5em;padding-top:.5em}
.t{font-family:ui-monospace,monospace;font-size:13px}.bad{color:#b00}audio{height:2em;width:16em}
img{max-width:100%}.meta{color:#555}
"""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _write_report(out: Path, metrics: dict, embed_audio: bool | None) -> Path:
    rows = metrics["sentences"]
    audio_bytes = sum((out / r[f"audio_{k}"]).stat().st_size for r in rows for k in KINDS)
    embed = {"audio": audio_bytes <= EMBED_LIMIT_BYTES if embed_audio is None else embed_audio,
             "image": sum((out / r["figure"]).stat().st_size for r in rows) <= EMBED_LIMIT_BYTES}

    def src(path: str, kind: str) -> str:
        """A data URI while the page stays reasonably small, else the file beside the page."""
        if embed[kind]:
            mime = "audio/wav" if kind == "audio" else "image/png"
            return f"data:{mime};base64," + base64.b64encode((out / path).read_bytes()).decode()
        return html.escape(path)

    t, e = metrics["totals"], html.escape
    head = "".join(
        f"<tr><th>{name}</th><td class=n>{_pct(t[f'cer_{k}'])}</td><td class=n>{_pct(t[f'wer_{k}'])}</td></tr>"
        for k, name in zip(KINDS, ("generated (the model)", "teacher-forced (the model on the true past)",
                                   "codec resynthesis (model's ceiling)", "reference recording (ASR's ceiling)"))
    )
    other = [
        ("runaways (hit the length limit)", f"{t['runaways']} of {t['sentences']} ({_pct(t['runaway_rate'])})"),
        ("sentences with a click (a jump no speech makes)",
         ", ".join(f"{name} {t[f'clicks_{k}']}" for k, name in zip(KINDS, ("generated", "teacher-forced", "resynthesis", "reference")))),
        ("duration generated / reference", f"mean {t['duration_ratio_mean']:.2f}, median {t['duration_ratio_median']:.2f}"),
        ("real-time factor, token generation", f"{t['rtf_generate']:.3f} ({t['seconds_generating']:.1f} s)"),
        ("real-time factor, codec decoding", f"{t['rtf_decode']:.3f} ({t['seconds_decoding']:.1f} s)"),
        ("audio generated / reference", f"{t['seconds_generated']:.1f} s / {t['seconds_reference']:.1f} s"),
    ]
    parts = [
        "<!doctype html><html><head><meta charset=utf-8><title>toktts evaluation</title>",
        f"<style>{_CSS}</style></head><body><h1>toktts evaluation</h1>",
        (f"<p class=meta>model <b>{e(metrics['model'])}</b> · corpus {e(metrics['corpus'])} · "
         f"{e(metrics['split_rule'])} · {t['sentences']} sentences · ASR {e(metrics['asr'])} · "
         f"sampling {e(json.dumps(metrics['sampling']))}, seed {metrics['seed']}, batch {metrics['batch_size']} "
         f"on {e(metrics['device'])} · {e(metrics['date'])}</p>"),
        ("<p>Read the model's error rates beside its ceilings: the codec resynthesis is the best this "
         "model could sound, the reference is how well the ASR hears this voice at all. The teacher-forced "
         "row is the model's first choice at every step when the past it reads is the recording's: the gap "
         "from it to the generated row is exposure bias (the model building on its own errors), the gap "
         "from it to the codec resynthesis is what the model has not learned yet.</p>"),
        f"<table><tr><th></th><th>CER</th><th>WER</th></tr>{head}</table>",
        "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in other) + "</table>",
    ]
    for row in rows:
        stop = row["stop_reason"]
        stop_html = f"<b class=bad>{stop}</b>" if stop == "max_length" else stop
        cells = "".join(
            f"<tr><th>{k}</th><td><audio controls preload=none src=\"{src(row[f'audio_{k}'], 'audio')}\"></audio></td>"
            f"<td class=n>{row[f'seconds_{k}']:.2f} s</td><td class=n>{_pct(row[f'cer_{k}'])}</td>"
            f"<td class=n>{_pct(row[f'wer_{k}'])}</td><td class=t>{e(row[f'transcript_{k}']) or '<i>(nothing)</i>'}</td></tr>"
            for k in KINDS
        )
        parts.append(
            f"<section id=\"{e(row['id'])}\"><h3>{e(row['id'])}</h3><p class=t>{e(row['text'])}</p>"
            f"<p class=meta>stopped by {stop_html} · duration ratio {row['duration_ratio']:.2f}</p>"
            "<table><tr><th></th><th>audio</th><th>length</th><th>CER</th><th>WER</th><th>ASR transcript</th></tr>"
            f"{cells}</table><img alt=\"spectrograms and alignment of {e(row['id'])}\" "
            f"src=\"{src(row['figure'], 'image')}\"></section>"
        )
    parts.append("</body></html>")
    path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path


def format_summary(metrics: dict) -> str:
    """A few lines for the terminal."""
    t = metrics["totals"]
    return "\n".join([
        f"{t['sentences']} sentences ({metrics['split_rule']}), ASR {metrics['asr']}",
        "CER generated {} | teacher-forced {} | codec resynthesis {} | reference {}".format(
            *(_pct(t[f"cer_{k}"]) for k in KINDS)),
        "WER generated {} | teacher-forced {} | codec resynthesis {} | reference {}".format(
            *(_pct(t[f"wer_{k}"]) for k in KINDS)),
        (f"runaways {t['runaways']}/{t['sentences']}, clicks {t['clicks_generated']}/{t['sentences']} "
         f"(teacher-forced {t['clicks_teacher_forced']}), duration ratio median {t['duration_ratio_median']:.2f}, "
         f"RTF generate {t['rtf_generate']:.3f}, decode {t['rtf_decode']:.3f}"),
        f"report: {metrics['files']['report']}",
    ])
