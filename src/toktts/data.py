"""The token cache (`prepare`), length-bucketed batches and collation.

`prepare` reads an LJSpeech-layout corpus once: normalises the text, splits train/validation
(seeded), fits the mel codec if that is the codec, and encodes the audio in batches into shards::

    <cache>/<key>/
        codec.safetensors       mel codec state (mel only)
        train-00000/            codes.npy (K, frames) int16, index.npy (n, 2) offset/length,
        val-00000/              meta.json (ids, texts, text ids)
        manifest.json           written last: the cache is complete only when it exists

`<key>` hashes everything that changes the tokens (corpus listing, codec, split, clipping), so
a rerun with the same config reuses the cache and a changed config makes a new one. Each shard
is written to a temporary directory and renamed, so an interrupted prepare resumes from the
shards already finished and never trusts a half-written one. Only one shard of audio is in
memory at a time, so memory stays flat in the corpus size.

Utterances whose audio cannot be used (missing, unreadable, empty, silent, out of the length
range) are skipped and counted per reason; clipped ones are kept and counted. `prepare` warns
with the counts in one line and fails clearly when no usable training audio remains.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from tqdm import tqdm

from toktts.audio import load_audio
from toktts.codecs import Codec, build_codec
from toktts.config import Config
from toktts.corpus import ids_in, read_corpus
from toktts.errors import TokttsError
from toktts.files import write_atomic, writing
from toktts.patterns import Layout
from toktts.phonemes import encode_texts
from toktts.text import normalize

log = logging.getLogger(__name__)
CACHE_VERSION = 1
SKIPS = ("empty_text", "too_long_text", "missing_wav", "unreadable_wav", "empty_wav", "too_short", "too_long", "silent")
SILENT_PEAK = 1e-4  # -80 dBFS: nothing audible
FULL_SCALE = 0.99  # a sample at least this loud (after resampling) is at the clipping level ...
CLIPPED_FRACTION = 0.001  # ... and audio with more than this fraction of such samples is clipped


def _new_counts() -> dict[str, int]:
    """Utterances skipped per reason, plus the clipped ones that were kept."""
    return dict.fromkeys((*SKIPS, "clipped"), 0)


@dataclass
class Item:
    id: str
    text: str
    wav_path: str


def _cache_key(cfg: Config, corpus: Path) -> str:
    meta = corpus / "metadata.csv"
    stat = meta.stat()
    d = cfg.data
    key = {
        "version": CACHE_VERSION,
        "corpus": str(corpus.resolve()),
        "metadata": [stat.st_size, stat.st_mtime_ns],
        "codec": _token_codec(cfg),
        "codec_from": _codec_from(cfg) and _codec_digest(_codec_from(cfg)),
        "data": [d.normalize, d.val_size, d.val_ids, d.split_seed, d.clip_seconds, d.min_seconds,
                 d.max_seconds, d.max_text_chars, d.noise_copies, d.noise_snr_db],
    }
    if d.val_ids and Path(d.val_ids).is_file():  # the ids it holds, not only where it is
        key["val_ids"] = hashlib.sha1(Path(d.val_ids).read_bytes()).hexdigest()
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _codec_digest(path: Path) -> str:
    """What a codec file holds (tensors and settings), not how its bytes happen to be laid out: a
    voice saved again with the same codec keeps its token cache."""
    from safetensors import safe_open

    h = hashlib.sha1()
    with safe_open(str(path), "np") as f:
        h.update(json.dumps(f.metadata() or {}, sort_keys=True).encode())
        for name in sorted(f.keys()):
            array = f.get_tensor(name)
            h.update(f"{name} {array.dtype} {array.shape}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _token_codec(cfg: Config) -> dict:
    """The codec settings that change the tokens (Griffin-Lim's iterations and the despiking only
    change decoding)."""
    return {k: v for k, v in asdict(cfg.codec).items() if k not in ("griffin_lim_iters", "despike")}


def _codec_from(cfg: Config) -> Path | None:
    """The fitted mel codec file of data.codec_from, or None when it is not set."""
    if not cfg.data.codec_from:
        return None
    path = Path(cfg.data.codec_from) / "codec.safetensors"
    if cfg.codec.name != "mel" or not path.is_file():
        raise TokttsError(
            f"data.codec_from {cfg.data.codec_from!r} holds no fitted mel codec (codec.safetensors); "
            "give the model directory of a mel-codec model or leave it empty"
        )
    return path


def cache_dir(cfg: Config) -> Path:
    """Where `prepare` puts (or found) the token cache for this config: data.tokens when it is
    set (checked against the config's codec), else <cache_dir>/<key> of the corpus."""
    if cfg.data.tokens:
        return _given_tokens(cfg)
    corpus = Path(cfg.data.corpus)
    if not cfg.data.corpus:
        raise TokttsError("no corpus given; set data.corpus (e.g. --set data.corpus=/path/to/corpus)")
    root = Path(cfg.data.cache_dir) if cfg.data.cache_dir else corpus / ".toktts-cache"
    if not (corpus / "metadata.csv").is_file():
        read_corpus(corpus)  # raises the corpus module's clear error
    return root / _cache_key(cfg, corpus)


def _given_tokens(cfg: Config) -> Path:
    """data.tokens, if it is a complete token cache of this version made with the config's codec
    (its settings, and the fitted codec of data.codec_from when that is set)."""
    root, given = Path(cfg.data.tokens), cfg.data.tokens
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        version, theirs = manifest["version"], manifest["codec"]
    except FileNotFoundError:
        raise TokttsError(f"data.tokens {given!r} is not a complete token cache (no manifest.json); "
                          "give a directory that `toktts prepare` made (<corpus>/.toktts-cache/<key>)") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise TokttsError(f"data.tokens {given!r}: its manifest.json is unreadable; copy the cache again") from None
    if version != CACHE_VERSION:
        raise TokttsError(f"data.tokens {given!r} is a token cache of version {version}, this toktts reads "
                          f"{CACHE_VERSION}; run `toktts prepare` again where the corpus is")
    for key, ours in _token_codec(cfg).items():
        if theirs.get(key) != ours:
            raise TokttsError(f"data.tokens {given!r} was made with codec.{key}={theirs.get(key)!r}, "
                              f"this config has {ours!r}; use the config that prepared it")
    source = _codec_from(cfg)
    fitted = root / "codec.safetensors"
    if source is not None and (not fitted.is_file() or _codec_digest(fitted) != _codec_digest(source)):
        raise TokttsError(f"data.tokens {given!r} was not made with the codec of data.codec_from "
                          f"{cfg.data.codec_from!r}; prepare it with that config (configs/finetune.yaml)")
    return root


def hold_out(items: list[Item], ids: set[str]) -> tuple[list[Item], list[Item]]:
    """(train, val) with the items whose id is in `ids` held out."""
    return [i for i in items if i.id not in ids], [i for i in items if i.id in ids]


def _split(cfg: Config, items: list[Item]) -> tuple[list[Item], list[Item]]:
    if cfg.data.val_ids:
        path = Path(cfg.data.val_ids)
        if not path.is_file():
            raise TokttsError(f"data.val_ids file {str(path)!r} not found; give a file of ids or leave it empty")
        train, val = hold_out(items, ids_in(path.read_text(encoding="utf-8-sig")))
        if not val:  # e.g. configs/finetune.yaml's ids with a corpus of one's own
            raise TokttsError(f"data.val_ids file {str(path)!r} names none of the utterances of corpus "
                              f"{cfg.data.corpus!r}; list ids of this corpus, or hold out a seeded split "
                              "with --set data.val_ids=")
        return train, val
    order = list(range(len(items)))
    random.Random(cfg.data.split_seed).shuffle(order)
    # val_size, but never more than a tenth of a small corpus (at least one when it has two)
    n_val = min(cfg.data.val_size, max(len(items) // 10, 1)) if len(items) > 1 else 0
    val = sorted(order[:n_val])
    held = set(val)
    return [items[i] for i in range(len(items)) if i not in held], [items[i] for i in val]


def _read_items(cfg: Config, counts: dict[str, int]) -> list[Item]:
    items = []
    for utt in read_corpus(cfg.data.corpus):
        text = normalize(utt.normalized_text) if cfg.data.normalize else utt.normalized_text
        if not text.strip():
            counts["empty_text"] += 1
        elif len(text) > cfg.data.max_text_chars:
            counts["too_long_text"] += 1
        else:
            items.append(Item(utt.id, text, str(utt.wav_path)))
    return items


def _load(item: Item, cfg: Config, counts: dict[str, int]) -> np.ndarray | None:
    """The item's audio at the codec rate, or None (counted) when it must be skipped."""
    rate = cfg.codec.sample_rate
    if not os.path.isfile(item.wav_path):
        counts["missing_wav"] += 1
        return None
    if os.path.getsize(item.wav_path) == 0:
        counts["empty_wav"] += 1
        return None
    try:
        audio = load_audio(item.wav_path, rate)
    except Exception:  # any decoding failure of one file is a skip, never fatal
        counts["unreadable_wav"] += 1
        return None
    if not np.isfinite(audio).all():  # a float wav holding NaN or inf
        counts["unreadable_wav"] += 1
        return None
    if len(audio) == 0:
        counts["empty_wav"] += 1
        return None
    if cfg.data.clip_seconds > 0:
        audio = audio[: int(cfg.data.clip_seconds * rate)]
    seconds = len(audio) / rate
    if seconds < cfg.data.min_seconds:
        counts["too_short"] += 1
        return None
    if seconds > cfg.data.max_seconds:
        counts["too_long"] += 1
        return None
    if np.abs(audio).max() < SILENT_PEAK:
        counts["silent"] += 1
        return None
    if np.mean(np.abs(audio) >= FULL_SCALE) > CLIPPED_FRACTION:
        counts["clipped"] += 1  # kept: still speech, but the user should know
    return audio


def _encode_shard(
    codec: Codec, items: list[Item], cfg: Config, counts: dict[str, int], out: Path, noise_copies: int, seed: int
) -> int:
    """Encode one shard's utterances in length-sorted batches and write it atomically."""
    loaded = [(it, a) for it in items if (a := _load(it, cfg, counts)) is not None]
    rng = np.random.default_rng(seed)
    originals = list(loaded)
    for copy in range(noise_copies):
        loaded += [(Item(f"{it.id}~noise{copy + 1}", it.text, it.wav_path), _add_noise(a, cfg.data.noise_snr_db, rng))
                   for it, a in originals]
    loaded.sort(key=lambda p: len(p[1]))
    # On a GPU, batches of similar length keep it busy. On CPU, batching is slower than one
    # utterance per call (EnCodec: 7.2 s vs 5.8 s for 96 s of audio, benchmarks/RESULTS.md): the
    # memory-bound convolutions fall out of cache as the batch grows.
    on_gpu = getattr(codec, "device", torch.device("cpu")).type != "cpu"
    budget = int(cfg.data.encode_batch_seconds * cfg.codec.sample_rate) if on_gpu else 0
    codes_out, meta = [], {"ids": [], "texts": []}
    i = 0
    while i < len(loaded):
        j = i + 1
        while j < len(loaded) and len(loaded[j][1]) * (j + 1 - i) <= budget:
            j += 1
        group = loaded[i:j]
        longest = len(group[-1][1])
        wav = torch.zeros(len(group), longest)
        for b, (_, a) in enumerate(group):
            wav[b, : len(a)] = torch.from_numpy(a)
        lengths = torch.tensor([len(a) for _, a in group])
        codes, frames = codec.encode(wav, lengths)  # (B, K, T), (B,)
        for b, (it, _) in enumerate(group):
            codes_out.append(codes[b, :, : frames[b]].cpu().numpy().astype(np.int16))
            meta["ids"].append(it.id)
            meta["texts"].append(it.text)
        i = j
    lengths = np.array([c.shape[1] for c in codes_out], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    K = cfg.codec.n_codebooks
    all_codes = np.concatenate(codes_out, axis=1) if codes_out else np.zeros((K, 0), np.int16)
    index = np.stack([offsets, lengths], 1) if codes_out else np.zeros((0, 2), np.int64)
    meta["skipped"] = counts  # kept per shard so a resumed prepare still reports every skip
    _write_shard(out, {"codes.npy": all_codes, "index.npy": index}, meta)
    return len(codes_out)


def _write_shard(out: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write a shard directory under a temporary name and rename it: readers see all of it or none.
    On failure (a full disk) the partial shard is removed and the error raised."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for name, array in arrays.items():
            buffer = io.BytesIO()  # through Python's file API: a full disk raises OSError (see toktts.files)
            np.save(buffer, array)
            (tmp / name).write_bytes(buffer.getvalue())
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back
        raise


def _add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(audio**2)) + 1e-12
    noise = rng.standard_normal(len(audio)).astype(np.float32) * np.sqrt(power / 10 ** (snr_db / 10))
    return audio + noise


def prepare(cfg: Config, progress: bool = True, device: str = "cpu") -> Path:
    """Build (or reuse) the token cache for `cfg`; returns its directory. Prepares of the same
    cache started at once (two trainings on one corpus) take turns: the first builds it, the
    others wait and reuse it."""
    root = cache_dir(cfg)
    if (root / "manifest.json").is_file():
        log.info("reusing token cache %s", root)
        return root
    with _cache_writing(root):
        root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("another prepare is building the token cache %s; waiting for it", root)
        lock.acquire()
    try:
        if (root / "manifest.json").is_file():  # the one we waited for built it
            log.info("reusing token cache %s", root)
            return root
        return _build_cache(cfg, root, progress, device)
    finally:
        lock.release()


def _build_cache(cfg: Config, root: Path, progress: bool, device: str) -> Path:
    counts = _new_counts()
    items = _read_items(cfg, counts)
    n_utterances = len(items) + counts["empty_text"] + counts["too_long_text"]
    train, val = _split(cfg, items)
    if not train:
        raise TokttsError(f"corpus {cfg.data.corpus!r} has no usable training utterances")

    if (source := _codec_from(cfg)) is not None and not (root / "codec.safetensors").is_file():
        with _cache_writing(root):
            write_atomic(root / "codec.safetensors", source.read_bytes())
    codec = build_codec(cfg.codec, root if (root / "codec.safetensors").is_file() else None).to(device)
    if cfg.codec.name == "mel" and not codec.is_fitted:
        fit_counts = _new_counts()
        sample = train[: cfg.codec.fit_utterances]
        audio = (a for it in sample if (a := _load(it, cfg, fit_counts)) is not None)
        try:
            codec.fit(audio, progress=progress)
        except TokttsError:
            skipped = {k: fit_counts[k] for k in SKIPS if fit_counts[k]}
            if sum(skipped.values()) == len(sample):  # every file was skipped: say why
                raise TokttsError(
                    f"no usable audio in the first {len(sample)} training utterances (skipped: {skipped}); "
                    "check the wavs and data.min_seconds / data.max_seconds"
                ) from None
            raise
        with _cache_writing(root):
            codec.save(root)

    shards = []
    size = cfg.data.shard_size
    jobs = [(split, n, group) for split, group_items in (("train", train), ("val", val))
            for n, group in enumerate(group_items[i : i + size] for i in range(0, len(group_items), size))]
    total = {"train": 0, "val": 0}
    # `with` ends the bar's line even when an error stops prepare: the error gets a line of its own
    with tqdm(total=len(train) + len(val), desc="prepare", unit="utt", disable=not progress) as bar:
        for split, n, group in jobs:
            out = root / f"{split}-{n:05d}"
            if not (out / "meta.json").is_file():
                noise = cfg.data.noise_copies if split == "train" else 0
                with _cache_writing(root):
                    _encode_shard(codec, group, cfg, _new_counts(), out, noise, seed=cfg.data.split_seed + n)
            meta = json.loads((out / "meta.json").read_text())
            total[split] += len(meta["ids"])
            for k, v in meta["skipped"].items():
                counts[k] = counts.get(k, 0) + v  # .get: shards of older versions counted other reasons
            shards.append(out.name)
            bar.update(len(group))
    skipped = {k: v for k, v in counts.items() if v and k != "clipped"}
    if total["train"] == 0:
        shutil.rmtree(root, ignore_errors=True)  # nothing in it is worth keeping: rerun from scratch
        raise TokttsError(
            f"no usable training audio in corpus {cfg.data.corpus!r} (skipped: {skipped}); fix or replace "
            "the wavs, or check data.min_seconds / data.max_seconds"
        )
    if skipped or counts["clipped"]:
        log.warning("%s", _problems_line(skipped, counts["clipped"], n_utterances, root))
    manifest = {
        "version": CACHE_VERSION,
        "corpus": str(Path(cfg.data.corpus).resolve()),
        "codec": asdict(cfg.codec),
        "shards": shards,
        "utterances": total,
        "skipped": skipped,
        "clipped": counts["clipped"],
    }
    with _cache_writing(root):
        write_atomic(root / "manifest.json", json.dumps(manifest, indent=1))
    return root


def _cache_writing(root: Path):
    """One clear line instead of a traceback when the cache cannot be written."""
    return writing(root, "choose another data.cache_dir")


def _problems_line(skipped: dict[str, int], clipped: int, n_utterances: int, root: Path) -> str:
    """e.g. "skipped 2 of 10 utterances (unreadable_wav 1, silent 1); kept 1 clipped (...); ..." """
    parts = []
    if skipped:
        reasons = ", ".join(f"{k} {v}" for k, v in skipped.items())
        parts.append(f"skipped {sum(skipped.values())} of {n_utterances} utterances ({reasons})")
    if clipped:
        parts.append(f"kept {clipped} clipped (over {CLIPPED_FRACTION:.1%} of samples at full scale)")
    if skipped:  # the cache key does not see the wavs themselves
        parts.append(f"to add fixed wavs, delete the token cache {str(root)!r} and prepare again")
    return "; ".join(parts)


def prepare_summary(root: Path) -> str:
    m = json.loads((root / "manifest.json").read_text())
    skipped = {k: v for k, v in m["skipped"].items() if v}
    ds = TokenDataset(root, "train", "chars")  # its frames only
    minutes = ds.frames.sum() / ds.frame_rate / 60
    amount = f"{minutes / 60:.2f} h" if minutes >= 60 else f"{minutes:.1f} min"
    clipped = f"; clipped (kept): {m['clipped']}" if m.get("clipped") else ""
    return (f"token cache {root}: {m['utterances']['train']} train / {m['utterances']['val']} val "
            f"utterances, {amount} of training audio; skipped: {skipped or 'none'}{clipped}")


class TokenDataset:
    """The utterances of one split of a token cache: codes memory-mapped, text ids in memory."""

    def __init__(self, root: str | Path, split: str, text_input: str, phonemes: bool = False):
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise TokttsError(f"token cache {str(self.root)!r} is incomplete; run `toktts prepare` with this config")
        manifest = json.loads(manifest_path.read_text())
        self.frame_rate = manifest["codec"]["frame_rate"]
        self.ids, self.texts = [], []
        self._codes, rows = [], []
        for shard in (s for s in manifest["shards"] if s.startswith(split + "-")):
            meta = json.loads((self.root / shard / "meta.json").read_text())
            codes = np.load(self.root / shard / "codes.npy", mmap_mode="r")
            index = np.load(self.root / shard / "index.npy")
            for (offset, length), utt_id, text in zip(index, meta["ids"], meta["texts"]):
                rows.append((len(self._codes), offset, length))
                self.ids.append(utt_id)
                self.texts.append(text)
            self._codes.append(codes)
        self._rows = np.array(rows, dtype=np.int64).reshape(-1, 3)
        if text_input != "chars":
            log.info("reading the %s of %d %s texts", text_input, len(self.texts), split)
        self.text_ids = [np.array(ids, dtype=np.int64) for ids in encode_texts(self.texts, text_input)]
        # espeak-ng's phonemes of each text: the targets of train.phoneme_weight
        self.phoneme_ids = None
        if phonemes:
            log.info("phonemizing %d %s texts", len(self.texts), split)
            self.phoneme_ids = [np.array(ids, dtype=np.int64) for ids in encode_texts(self.texts, "phonemes")]
        self.frames = self._rows[:, 2]

    def __len__(self) -> int:
        return len(self.ids)

    def codes(self, i: int) -> np.ndarray:
        shard, offset, length = self._rows[i]
        return np.asarray(self._codes[shard][:, offset : offset + length], dtype=np.int64)  # (K, T)


def bucket_batches(
    frames: np.ndarray, text_lengths: np.ndarray, batch_frames: int, max_batch_size: int, seed: int
) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size (longest x count) fits
    `batch_frames`: shuffle, sort within pools of ~50 batches, cut, shuffle the batches.
    Deterministic in `seed` (the training loop passes seed + epoch)."""
    rng = random.Random(seed)
    order = list(range(len(frames)))
    rng.shuffle(order)
    mean_batch = max(1, batch_frames // max(int(np.mean(frames)) if len(frames) else 1, 1))
    pool = 50 * mean_batch
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: (frames[i], text_lengths[i]))
        batch: list[int] = []
        for i in chunk:
            longest = max(frames[i], max((frames[j] for j in batch), default=0))
            if batch and (longest * (len(batch) + 1) > batch_frames or len(batch) >= max_batch_size):
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def collate(dataset: TokenDataset, indices: list[int], layout: Layout) -> dict[str, torch.Tensor]:
    """A batch: text (B, L), text_lengths (B,), tokens (B, N, S), frames (B,); and phonemes (B, P),
    phoneme_lengths (B,) when the dataset has them."""
    texts = [dataset.text_ids[i] for i in indices]
    codes = [dataset.codes(i) for i in indices]
    B, K = len(indices), codes[0].shape[0]
    L = max(len(t) for t in texts)
    T = max(c.shape[1] for c in codes)
    text = torch.zeros(B, L, dtype=torch.long)
    audio = torch.zeros(B, K, T, dtype=torch.long)
    for b, (t, c) in enumerate(zip(texts, codes)):
        text[b, : len(t)] = torch.from_numpy(t)
        audio[b, :, : c.shape[1]] = torch.from_numpy(c)
    text_lengths = torch.tensor([len(t) for t in texts])
    frames = torch.tensor([c.shape[1] for c in codes])
    batch = {"text": text, "text_lengths": text_lengths, "tokens": layout.tokens(audio, frames), "frames": frames}
    if dataset.phoneme_ids is not None:
        said = [dataset.phoneme_ids[i] for i in indices]
        batch["phonemes"] = torch.zeros(B, max(1, max(len(p) for p in said)), dtype=torch.long)
        for b, p in enumerate(said):
            batch["phonemes"][b, : len(p)] = torch.from_numpy(p)
        batch["phoneme_lengths"] = torch.tensor([len(p) for p in said])
    return batch
