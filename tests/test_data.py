"""The token cache: skipped files are counted, clipping and noise copies, shard resume, batching."""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toktts.config import load_config
from toktts.data import TokenDataset, bucket_batches, cache_dir, collate, prepare, prepare_summary
from toktts.errors import TokttsError
from toktts.patterns import Layout

DEMO = Path(__file__).parent.parent / "configs" / "demo.yaml"


def config(corpus: Path, cache: Path, *extra: str):
    return load_config([DEMO], [f"data.corpus={corpus}", f"data.cache_dir={cache}", "data.val_size=1",
                                "codec.codebook_size=16", "data.shard_size=3", *extra])


def test_missing_and_corrupt_wavs_are_skipped_and_counted(corpus, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    wavs = sorted((broken / "wavs").glob("*.wav"))
    wavs[0].unlink()  # missing
    wavs[1].write_bytes(b"RIFF not really a wav")  # corrupt
    root = prepare(config(broken, tmp_path / "cache"), progress=False)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["skipped"]["missing_wav"] == 1 and manifest["skipped"]["unreadable_wav"] == 1
    assert manifest["utterances"]["train"] + manifest["utterances"]["val"] == 8


def test_empty_silent_and_unreadable_wavs_are_skipped_clipped_ones_kept_with_counts(corpus, tmp_path, caplog):
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    wavs = sorted((broken / "wavs").glob("*.wav"))
    rate = sf.info(str(wavs[0])).samplerate
    wavs[0].write_bytes(b"")  # an empty file
    sf.write(str(wavs[1]), np.zeros(0), rate)  # a header and no samples
    sf.write(str(wavs[2]), np.zeros(rate), rate)  # a second of digital silence
    wavs[3].write_bytes(b"RIFF not really a wav")
    speech, _ = sf.read(str(wavs[4]))
    sf.write(str(wavs[4]), np.clip(speech * 10, -1, 1), rate)  # badly clipped, but still speech
    cfg = config(broken, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="toktts.data"):
        root = prepare(cfg, progress=False)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["skipped"] == {"unreadable_wav": 1, "empty_wav": 2, "silent": 1}
    assert manifest["clipped"] == 1
    assert manifest["utterances"]["train"] + manifest["utterances"]["val"] == 6  # the clipped one is kept
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "skipped 4 of 10 utterances (unreadable_wav 1, empty_wav 2, silent 1)" in warning
    assert "kept 1 clipped" in warning and str(root) in warning
    assert "clipped (kept): 1" in prepare_summary(root)


@pytest.mark.parametrize("codec_fitted, message", [
    (False, "no usable audio in the first 9 training utterances (skipped: {'silent': 9})"),  # fitting the codec
    (True, "no usable training audio in corpus"),  # encoding the shards (train and val: 10 silent)
], ids=["fresh", "codec-already-fitted"])
def test_no_usable_audio_is_a_clear_error_with_counts(corpus, tmp_path, codec_fitted, message):
    silent = tmp_path / "silent"
    shutil.copytree(corpus, silent)
    cfg = config(silent, tmp_path / "cache")
    if codec_fitted:  # an earlier prepare fitted the codec and was interrupted before any shard
        root = prepare(cfg, progress=False)
        for shard in root.glob("*-0000*"):
            shutil.rmtree(shard)
        (root / "manifest.json").unlink()
    for wav in (silent / "wavs").glob("*.wav"):
        info = sf.info(str(wav))
        sf.write(str(wav), np.zeros(info.frames), info.samplerate)
    with pytest.raises(TokttsError) as error:
        prepare(cfg, progress=False)
    assert message in str(error.value) and "'silent': " in str(error.value)
    assert not (cache_dir(cfg) / "manifest.json").exists()


def test_clip_seconds_and_max_seconds(corpus, tmp_path):
    cfg = config(corpus, tmp_path / "cache", "data.clip_seconds=0.5")
    data = TokenDataset(prepare(cfg, progress=False), "train", "chars")
    assert (data.frames == math.ceil(0.5 * cfg.codec.frame_rate)).all()  # every clip cut to 0.5 s
    cfg = config(corpus, tmp_path / "cache", "data.min_seconds=0", "data.max_seconds=0.01")
    with pytest.raises(TokttsError, match="no usable audio.*too_long"):
        prepare(cfg, progress=False)


def test_val_ids_hold_out_those_utterances_and_must_name_some(corpus, tmp_path):
    ids = sorted(p.stem for p in (corpus / "wavs").glob("*.wav"))
    listed = tmp_path / "val.txt"
    listed.write_text(f"{ids[2]}|its text\n{ids[0]}\nNOT-IN-IT\n")
    cfg = config(corpus, tmp_path / "cache", f"data.val_ids={listed}")
    root = prepare(cfg, progress=False)
    assert sorted(TokenDataset(root, "val", "chars").ids) == [ids[0], ids[2]]
    assert not {ids[0], ids[2]} & set(TokenDataset(root, "train", "chars").ids)
    listed.write_text("LJ999-9999\n")  # the bundled voice's ids with one's own corpus
    with pytest.raises(TokttsError, match=r"val.txt' names none of the utterances of corpus .*--set data.val_ids="):
        prepare(config(corpus, tmp_path / "cache2", f"data.val_ids={listed}"), progress=False)


def test_noise_copies_add_training_rows_only(corpus, tmp_path):
    plain = prepare(config(corpus, tmp_path / "a"), progress=False)
    noisy = prepare(config(corpus, tmp_path / "b", "data.noise_copies=1"), progress=False)
    a, b = TokenDataset(plain, "train", "chars"), TokenDataset(noisy, "train", "chars")
    assert len(b) == 2 * len(a)
    assert len(TokenDataset(noisy, "val", "chars")) == len(TokenDataset(plain, "val", "chars"))
    assert sum("~noise1" in i for i in b.ids) == len(a)


def test_interrupted_prepare_resumes_from_finished_shards(corpus, tmp_path):
    cfg = config(corpus, tmp_path / "cache")
    root = prepare(cfg, progress=False)
    first = root / "train-00000" / "codes.npy"
    stamp = first.stat().st_mtime_ns
    # as if killed while writing the last shard: no manifest, a half-written temporary shard
    (root / "manifest.json").unlink()
    shutil.rmtree(root / "train-00002")
    (root / "train-00002.tmp").mkdir()
    assert cache_dir(cfg) == root
    with pytest.raises(Exception, match="incomplete"):
        TokenDataset(root, "train", "chars")  # never trusted without its manifest
    prepare(cfg, progress=False)
    assert first.stat().st_mtime_ns == stamp  # finished shards are not redone
    assert (root / "train-00002" / "codes.npy").is_file()
    assert len(TokenDataset(root, "train", "chars")) == 9


def test_prepares_started_at_once_take_turns(corpus, tmp_path, caplog):
    """Two trainings started on one corpus: the second prepare waits for the first and reuses
    its cache (each writing the same shards would remove the other's half-written ones)."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = config(corpus, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="toktts.data"), ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(lambda _: prepare(cfg, progress=False), range(2)))
    assert roots[0] == roots[1]
    assert len(TokenDataset(roots[0], "train", "chars")) == 9 and len(TokenDataset(roots[0], "val", "chars")) == 1
    assert "another prepare is building the token cache" in caplog.text


def test_a_codec_saved_again_keeps_its_cache_another_codec_does_not(corpus, tmp_path):
    """data.codec_from: the cache follows what the codec file holds, not its bytes (a voice saved
    again, by another safetensors version, may write its settings in another order)."""
    from safetensors.numpy import load_file, save_file

    voice = prepare(config(corpus, tmp_path / "fit"), progress=False)  # a fitted mel codec
    raw = (voice / "codec.safetensors").read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    settings = header["__metadata__"]
    reordered = {k: dict(reversed(list(v.items()))) if k == "__metadata__" else v for k, v in header.items()}
    text = json.dumps(reordered, separators=(",", ":")).encode().ljust(size)  # (whitespace pads a header)
    for name, data in (("a", raw), ("b", raw[:8] + text + raw[8 + size :])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "codec.safetensors").write_bytes(data)
    assert (tmp_path / "a" / "codec.safetensors").read_bytes() != (tmp_path / "b" / "codec.safetensors").read_bytes()
    tensors = load_file(tmp_path / "b" / "codec.safetensors")  # the reordered file is a valid one
    key = {name: cache_dir(config(corpus, tmp_path / "cache", f"data.codec_from={tmp_path / name}"))
           for name in ("a", "b")}
    assert key["a"] == key["b"]
    tensors = {k: v + 1 if v.dtype.kind == "f" else v for k, v in tensors.items()}
    (tmp_path / "c").mkdir()
    save_file(tensors, tmp_path / "c" / "codec.safetensors", metadata=settings)
    assert cache_dir(config(corpus, tmp_path / "cache", f"data.codec_from={tmp_path / 'c'}")) != key["a"]


def test_changed_settings_make_a_new_cache(corpus, tmp_path):
    a = cache_dir(config(corpus, tmp_path / "cache"))
    b = cache_dir(config(corpus, tmp_path / "cache", "data.clip_seconds=1"))
    c = cache_dir(config(corpus, tmp_path / "cache", "train.lr=0.5"))  # training settings do not matter
    d = cache_dir(config(corpus, tmp_path / "cache", "codec.despike=0", "codec.griffin_lim_iters=8"))  # decoding's
    e = cache_dir(config(corpus, tmp_path / "cache", "codec.n_mels=40"))
    assert a != b and a == c == d and e != a


def test_bucket_batches_respect_the_budget_and_cover_everything():
    rng = np.random.default_rng(0)
    frames = rng.integers(20, 400, size=500)
    texts = frames // 3
    batches = bucket_batches(frames, texts, batch_frames=2000, max_batch_size=16, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or max(frames[i] for i in b) * len(b) <= 2000
    assert batches == bucket_batches(frames, texts, 2000, 16, seed=1)  # deterministic
    assert batches != bucket_batches(frames, texts, 2000, 16, seed=2)
    padded = sum(max(frames[i] for i in b) * len(b) for b in batches)
    assert padded < 1.15 * frames.sum()  # little padding: similar lengths go together


def test_collate_shapes(corpus, tmp_path):
    cfg = config(corpus, tmp_path / "cache")
    data = TokenDataset(prepare(cfg, progress=False), "train", "chars")
    layout = Layout("delay", cfg.codec.n_codebooks, cfg.codec.codebook_size)
    batch = collate(data, [0, 1, 2], layout)
    B, K = 3, cfg.codec.n_codebooks
    T = int(data.frames[[0, 1, 2]].max())
    assert batch["text"].shape == (B, max(len(data.text_ids[i]) for i in range(3)))  # (B, L)
    assert batch["tokens"].shape == (B, K, layout.n_steps(T))  # (B, N, S)
    assert batch["frames"].tolist() == data.frames[[0, 1, 2]].tolist()
