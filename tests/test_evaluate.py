"""`toktts evaluate` on a tiny, barely trained model and flite corpora: the ASR really listens
(flite's own recordings score well, the untrained model's babble does not), the metrics add up,
the report is self-contained, and the validation split holds only sentences never trained on."""
from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch

from toktts.audio import has_click
from toktts.config import load_config
from toktts.corpus import packaged_transcripts, read_corpus, synth_corpus
from toktts.errors import TokttsError
from toktts.asr import score_text
from toktts.evaluate import KINDS, evaluate, format_summary, split_rows

ROOT = Path(__file__).parent.parent
DEMO = str(ROOT / "configs" / "demo.yaml")
N_VAL = 4


def _shortest(split: str, n: int) -> list[tuple[str, str]]:
    return sorted(packaged_transcripts(split), key=lambda r: len(r[1]))[:n]


def _corpus(root: Path, rows: list[tuple[str, str]]) -> Path:
    texts = root / "texts.txt"
    texts.write_text("".join(f"{i}|{t}\n" for i, t in rows))
    return synth_corpus(root / "slt", texts=texts, progress=False)


@contextlib.contextmanager
def one_thread():
    """A 50k-parameter model decodes fastest on one thread; two crawl on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def val_corpus(tmp_path_factory) -> Path:
    """The shortest packaged LJSpeech validation sentences, spoken by flite (16 kHz: the codec
    runs at 24 kHz, so evaluate must resample)."""
    return _corpus(tmp_path_factory.mktemp("val"), _shortest("val", N_VAL))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model trained for 2 steps on 6 training sentences, one of them held out."""
    from toktts.data import prepare
    from toktts.train import train

    root = tmp_path_factory.mktemp("train")
    corpus = _corpus(root, _shortest("train", 6))
    settings = {
        "data.corpus": corpus, "data.val_size": 1, "data.cache_dir": root / "cache",
        "codec.codebook_size": 32, "codec.griffin_lim_iters": 8,
        "model.enc_layers": 1, "model.enc_dim": 32, "model.enc_heads": 2,
        "model.dec_layers": 2, "model.dec_dim": 32, "model.dec_heads": 2,
        "train.output_dir": root / "model", "train.max_steps": 2, "train.batch_frames": 1500,
        "train.warmup_steps": 1, "train.eval_every": 0, "train.save_every": 2, "train.max_minutes": 0,
        "train.schedule": "steps",
        "generate.max_seconds": 1.5,
    }
    cfg = load_config([DEMO], [f"{k}={v}" for k, v in settings.items()])
    prepare(cfg, progress=False)
    train(cfg, progress=False)
    return root / "model", corpus, cfg


@pytest.fixture(scope="module")
def result(model, val_corpus, tmp_path_factory) -> dict:
    model_dir, _, _ = model
    out = tmp_path_factory.mktemp("eval") / "report"
    with one_thread():  # batches of 3 and 1; 12 clips, so two ASR worker processes
        return evaluate(str(model_dir), str(val_corpus), split="val", out_dir=str(out), progress=False, batch_size=3)


def test_metrics_json_has_totals_and_rows_that_add_up(result, val_corpus):
    out = Path(result["files"]["report"]).parent
    metrics = json.loads((out / "metrics.json").read_text())
    rows, t = metrics["sentences"], metrics["totals"]
    assert [r["id"] for r in rows] == [u.id for u in read_corpus(val_corpus)]
    assert t["sentences"] == N_VAL and metrics["asr"] == "pocketsphinx" and "packaged" in metrics["split_rule"]
    for kind in KINDS:
        refs, hyps = [r["scored_text"] for r in rows], [r[f"scored_{kind}"] for r in rows]
        assert t[f"cer_{kind}"] == pytest.approx(jiwer.cer(refs, hyps), abs=1e-4)
        assert t[f"wer_{kind}"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-4)
        for r in rows:
            assert r[f"scored_{kind}"] == score_text(r[f"transcript_{kind}"])
            assert r[f"cer_{kind}"] == pytest.approx(jiwer.cer(r["scored_text"], r[f"scored_{kind}"]), abs=1e-4)
            audio, rate = sf.read(str(out / r[f"audio_{kind}"]))
            assert rate == 24000 and len(audio) / rate == pytest.approx(r[f"seconds_{kind}"], abs=1e-3)
            assert r[f"click_{kind}"] == has_click(audio)
        assert t[f"clicks_{kind}"] == sum(r[f"click_{kind}"] for r in rows)
    # The runaway count is the stop reasons', and a runaway used every frame it was allowed.
    assert t["runaways"] == sum(r["stop_reason"] == "max_length" for r in rows)
    assert t["runaway_rate"] == pytest.approx(t["runaways"] / N_VAL)
    assert all(r["stop_reason"] in ("eos", "max_length") for r in rows)
    rate = load_config([DEMO]).codec.frame_rate  # the tiny model keeps the demo's codec rate
    for r in rows:
        assert r["seconds_generated"] == pytest.approx(r["frames"] / rate, abs=1e-3)
        if r["stop_reason"] == "max_length":
            assert r["seconds_generated"] == pytest.approx(min(1.0 + 0.25 * len(r["text"]), 1.5), abs=1 / rate)
        # The reference is the corpus recording (flite, 16 kHz) resampled to the codec's rate.
        assert r["seconds_reference"] == pytest.approx(sf.info(str(val_corpus / "wavs" / f"{r['id']}.wav")).duration,
                                                       abs=1e-3)
        assert r["duration_ratio"] == pytest.approx(r["seconds_generated"] / r["seconds_reference"], abs=2e-3)
        # teacher forcing predicts one frame for each frame of the encoded recording
        assert r["seconds_teacher_forced"] == pytest.approx(r["seconds_resynthesized"], abs=1e-3)
    assert t["rtf_generate"] > 0 and t["rtf_decode"] > 0
    assert t["seconds_generated"] == pytest.approx(sum(r["seconds_generated"] for r in rows), abs=0.02)
    assert "CER generated" in format_summary(result)


def test_asr_hears_the_recordings_and_not_the_untrained_model(result):
    t = result["totals"]
    # flite's recordings of these sentences: pocketsphinx gets most of them right ...
    assert t["cer_reference"] < 0.35, result["sentences"]
    # ... while a model trained for 2 steps babbles.
    assert t["cer_generated"] > 0.6
    assert t["cer_generated"] > t["cer_reference"] + 0.3


def test_report_is_self_contained(result):
    page = Path(result["files"]["report"]).read_text()
    assert not re.search(r"https?://", page)  # no CDN, no external anything
    assert "<script" not in page and "<link" not in page
    sources = re.findall(r'<audio controls preload=none src="([^"]+)"', page)
    assert len(sources) == len(KINDS) * N_VAL
    for src in sources:
        assert src.startswith("data:audio/wav;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"RIFF"
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == N_VAL
    assert all(base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" for png in images)
    for r in result["sentences"]:
        assert r["transcript_reference"] in page and f'id="{r["id"]}"' in page


def test_report_links_audio_files_when_not_embedded(model, val_corpus, tmp_path):
    model_dir, _, _ = model
    out = tmp_path / "linked"
    with one_thread():
        evaluate(str(model_dir), str(val_corpus), limit=1, out_dir=str(out), progress=False, embed_audio=False)
    page = (out / "report.html").read_text()
    sources = re.findall(r'<audio controls preload=none src="([^"]+)"', page)
    assert len(sources) == len(KINDS) and all((out / src).is_file() for src in sources)
    assert (out / "figures" / f"{read_corpus(val_corpus)[0].id}.png").is_file()
    assert page.count('src="data:image/png;base64,') == 1  # the small figure is still embedded


def test_ceilings_from_an_earlier_evaluation_are_reused(result, model, val_corpus, tmp_path, monkeypatch):
    """Reference and resynthesis transcripts come from the earlier metrics.json: only the
    generated and teacher-forced clips are transcribed again."""
    import toktts.asr

    model_dir, _, _ = model
    earlier = result["files"]["metrics"]
    heard = []
    real = toktts.asr.PocketSphinx.transcribe

    def counting(self, wavs, update):
        heard.extend(wavs)
        return real(self, wavs, update)

    monkeypatch.setattr(toktts.asr.PocketSphinx, "transcribe", counting)
    with one_thread():
        again = evaluate(str(model_dir), str(val_corpus), out_dir=str(tmp_path / "again"), progress=False,
                         batch_size=3, ceilings_from=earlier)
    assert len(heard) == 2 * result["totals"]["sentences"]
    assert all(".generated." in str(w) or ".teacher_forced." in str(w) for w in heard)
    for kind in ("reference", "resynthesized"):
        assert again["totals"][f"cer_{kind}"] == result["totals"][f"cer_{kind}"]
    assert again["ceilings_from"] == earlier
    (tmp_path / "other").mkdir()
    other = _corpus(tmp_path / "other", _shortest("val", N_VAL + 1)[N_VAL:])
    with pytest.raises(TokttsError, match="another corpus"):
        evaluate(str(model_dir), str(other), out_dir=str(tmp_path / "x"), progress=False, ceilings_from=earlier)


def test_chunked_evaluation_hears_what_say_would_say(result, model, val_corpus, tmp_path, monkeypatch):
    """With chunk_chars the generated clip is `TTS.synthesize`'s audio of the sentence (chunks
    joined with pauses, no retries), sample for sample; the teacher-forced one stays whole."""
    from toktts.inference import TTS

    model_dir, _, _ = model
    earlier = result["files"]["metrics"]
    with one_thread():
        chunked = evaluate(str(model_dir), str(val_corpus), out_dir=str(tmp_path / "chunked"), progress=False,
                           limit=1, ceilings_from=earlier, chunk_chars=12)
        row = chunked["sentences"][0]
        tts = TTS.from_pretrained(str(model_dir))
        tts.cfg.generate.chunk_chars = 12
        said = tts.synthesize([row["text"]], retries=0, seed=0)[0]
    assert len(said["chunks"]) > 1 and chunked["sampling"]["chunk_chars"] == 12
    from toktts.audio import write_wav

    write_wav(tmp_path / "said.wav", said["audio"], said["sampling_rate"])
    assert (tmp_path / "chunked" / row["audio_generated"]).read_bytes() == (tmp_path / "said.wav").read_bytes()
    whole = next(r for r in result["sentences"] if r["id"] == row["id"])
    assert row["seconds_teacher_forced"] == whole["seconds_teacher_forced"]  # the recording's length
    assert row["seconds_generated"] != whole["seconds_generated"]  # pauses, trimmed edges
    # --no-close-chunks: the chunks as cut, as a voice saved with generate.close_chunks false says them
    with one_thread():
        as_cut = evaluate(str(model_dir), str(val_corpus), out_dir=str(tmp_path / "as_cut"), progress=False,
                          limit=1, ceilings_from=earlier, chunk_chars=12, close_chunks=False)
        tts.cfg.generate.close_chunks = False
        said = tts.synthesize([row["text"]], retries=0, seed=0)[0]
    assert chunked["sampling"]["close_chunks"] is True and as_cut["sampling"]["close_chunks"] is False
    write_wav(tmp_path / "said.wav", said["audio"], said["sampling_rate"])
    assert (tmp_path / "as_cut" / as_cut["sentences"][0]["audio_generated"]).read_bytes() == (tmp_path / "said.wav").read_bytes()
    assert [c["text"][-1] for c in said["chunks"]] != ["."] * len(said["chunks"])  # some chunk cut between words
    # --best-of: the take pocketsphinx hears best of each chunk, as `say --best-of` keeps it (the
    # tiny model's takes all sound alike to it, so the first wins: count what it was asked)
    from toktts.asr import PocketSphinx

    heard = []
    transcribe = PocketSphinx.transcribe_audio
    monkeypatch.setattr(PocketSphinx, "transcribe_audio", lambda self, *a: heard.append(1) or transcribe(self, *a))
    with one_thread():
        best = evaluate(str(model_dir), str(val_corpus), out_dir=str(tmp_path / "best"), progress=False,
                        limit=1, ceilings_from=earlier, chunk_chars=12, sampling={"best_of": 2})
    assert len(heard) == 2 * len(said["chunks"])  # both takes of every chunk were heard
    with one_thread():
        tts.cfg.generate.close_chunks = True
        said = tts.synthesize([row["text"]], retries=0, seed=0, best_of=2)[0]
    assert best["sampling"]["best_of"] == 2 and chunked["sampling"]["best_of"] == 1
    write_wav(tmp_path / "said.wav", said["audio"], said["sampling_rate"])
    assert (tmp_path / "best" / best["sentences"][0]["audio_generated"]).read_bytes() == (tmp_path / "said.wav").read_bytes()
    with pytest.raises(TokttsError, match="best_of picks the best of N takes of each chunk, as `say` speaks: give chunk_chars"):
        evaluate(str(model_dir), str(val_corpus), out_dir=str(tmp_path / "x"), progress=False, sampling={"best_of": 2})
    with pytest.raises(TokttsError, match=r"chunk_chars must be 0 or from 8 to 100000 \(0 = from the training texts\), got 3"):
        evaluate(str(model_dir), str(val_corpus), out_dir=str(tmp_path / "x"), progress=False, chunk_chars=3)
    with pytest.raises(TokttsError, match="temperature must be 0 or from 0.001 to 100"):
        evaluate(str(model_dir), str(val_corpus), out_dir=str(tmp_path / "x"), progress=False,
                 sampling={"temperature": -1.0})


def _corpus_copy(src: Path, dst: Path, rows: list[str], val_ids: list[str] | None = None) -> Path:
    """A corpus of some rows (`id|text|text` lines) of another, sharing its wavs."""
    dst.mkdir()
    (dst / "metadata.csv").write_text("".join(line + "\n" for line in rows))
    shutil.copytree(src / "wavs", dst / "wavs")
    if val_ids is not None:
        (dst / "val.txt").write_text("".join(f"{i}\n" for i in val_ids))
    return dst


def test_val_split_rules(model, val_corpus, tmp_path):
    from toktts.data import TokenDataset, cache_dir

    _, train_corpus, cfg = model
    # The model's own corpus: exactly the rows its training held out.
    rows, rule = split_rows(train_corpus, "val", cfg)
    assert [u.id for u in rows] == TokenDataset(cache_dir(cfg), "val", "chars").ids and "held out" in rule
    assert len(split_rows(train_corpus, "all", cfg)[0]) == 6
    # Another corpus: the packaged validation ids, less any sentence the model trained on,
    # recognised by its text (here under a validation id) ...
    train_lines = (train_corpus / "metadata.csv").read_text().splitlines()
    val_lines = (val_corpus / "metadata.csv").read_text().splitlines()
    trained_row = next(line for line in train_lines if line.split("|")[0] not in {u.id for u in rows})
    spare_val_id = _shortest("val", N_VAL + 1)[-1][0]
    disguised = f"{spare_val_id}|{trained_row.split('|', 1)[1]}"
    mixed = _corpus_copy(val_corpus, tmp_path / "mixed", val_lines[:2] + [disguised])
    rows, rule = split_rows(mixed, "val", cfg)
    assert [u.id for u in rows] == [line.split("|")[0] for line in val_lines[:2]]
    assert "packaged" in rule and "1 rows the model trained on dropped" in rule
    # ... or by its id; a val.txt in the corpus names the split.
    listed = _corpus_copy(val_corpus, tmp_path / "listed", val_lines[:2] + [trained_row],
                          val_ids=[trained_row.split("|")[0], val_lines[1].split("|")[0]])
    rows, rule = split_rows(listed, "val", cfg)
    assert [u.id for u in rows] == [val_lines[1].split("|")[0]] and "val.txt" in rule and "dropped" in rule
    only_trained = _corpus_copy(val_corpus, tmp_path / "trained", [trained_row], val_ids=[trained_row.split("|")[0]])
    with pytest.raises(TokttsError, match="training data"):
        split_rows(only_trained, "val", cfg)


def test_the_asr_workers_module_loads_without_torch():
    """ASR worker processes import toktts.evaluate: torch and the model stay out of them."""
    code = "import sys, toktts.evaluate; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_model_directory_says_what_its_training_held_out(model, val_corpus, tmp_path):
    """Rows added to the training corpus later (e.g. `corpus synth` growing it) move the seeded
    split; the ids the model directory recorded do not move, and new rows count as trained on."""
    from dataclasses import replace

    from toktts.checkpoint import held_out_ids
    from toktts.data import TokenDataset, cache_dir
    from toktts.inference import TTS

    model_dir, train_corpus, cfg = model
    held = held_out_ids(model_dir)
    assert held == TokenDataset(cache_dir(cfg), "val", "chars").ids and len(held) == 1
    saved = TTS.from_pretrained(model_dir).save_pretrained(tmp_path / "int8", dtype="int8")
    assert held_out_ids(saved) == held  # a copy for shipping keeps them
    extra = (val_corpus / "metadata.csv").read_text().splitlines()[:3]
    grown = _corpus_copy(train_corpus, tmp_path / "grown", extra + (train_corpus / "metadata.csv").read_text().splitlines())
    for line in extra:
        shutil.copy(val_corpus / "wavs" / f"{line.split('|')[0]}.wav", grown / "wavs")
    cfg = replace(cfg, data=replace(cfg.data, corpus=str(grown)))
    rows, rule = split_rows(grown, "val", cfg, held)
    assert [u.id for u in rows] == held and "its val_ids.txt" in rule
    recomputed = [u.id for u in split_rows(grown, "val", cfg)[0]]
    assert recomputed != held, "grow the corpus so that the seeded split moves"


def test_corpus_without_the_split_is_one_clear_error(model, tmp_path):
    model_dir, train_corpus, _ = model
    lines = (train_corpus / "metadata.csv").read_text().splitlines()
    other = _corpus_copy(train_corpus, tmp_path / "other", lines[:2])  # training ids, not the model's corpus
    with pytest.raises(TokttsError) as e:
        evaluate(str(model_dir), str(other), split="val", progress=False)
    message = str(e.value)
    assert str(other) in message and "'val'" in message and "toktts corpus synth" in message
    assert "\n" not in message
    with pytest.raises(TokttsError, match="unknown split"):
        evaluate(str(model_dir), str(other), split="test", progress=False)


@pytest.mark.parametrize("asr, message", [
    ("whisper:/nonexistent/whisper", "'/nonexistent/whisper' does not exist"),
    ("whisper:{empty}", "cannot load a Whisper model"),
    ("whisper:", "unknown ASR"),
    ("google", "unknown ASR"),
])
def test_missing_or_unknown_asr_is_a_clear_error(asr, message, model, val_corpus, tmp_path):
    model_dir, _, _ = model
    with pytest.raises(TokttsError, match=message) as e:
        evaluate(str(model_dir), str(val_corpus), asr=asr.replace("{empty}", str(tmp_path)), progress=False)
    assert "\n" not in str(e.value)


def _random_whisper(directory: Path) -> Path:
    """A Whisper checkpoint with random weights and a 27-letter vocabulary: no download, and
    it runs the same transformers code path as a real one (its transcripts are nonsense)."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    directory.mkdir()
    (directory / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyzĠ")}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                                 unk_token=end, bos_token=end, eos_token=end, pad_token=end)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|startoftranscript|>", "<|notimestamps|>"]})
    start, eos = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", end])
    ids = {"decoder_start_token_id": start, "eos_token_id": eos, "pad_token_id": eos}
    cfg = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, d_model=32, encoder_ffn_dim=64,
                        decoder_ffn_dim=64, max_target_positions=64, bos_token_id=eos,
                        begin_suppress_tokens=None, suppress_tokens=None, **ids)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(max_length=12, is_multilingual=False, **ids)
    model.save_pretrained(directory)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(directory)
    return directory


def test_whisper_asr_runs_from_a_local_directory(model, val_corpus, tmp_path):
    pytest.importorskip("transformers")
    model_dir, _, _ = model
    whisper = _random_whisper(tmp_path / "whisper")
    with one_thread():
        metrics = evaluate(str(model_dir), str(val_corpus), limit=1, out_dir=str(tmp_path / "out"),
                           asr=f"whisper:{whisper}", progress=False)
    row = metrics["sentences"][0]
    assert metrics["asr"] == f"whisper:{whisper}"
    assert all(isinstance(row[f"transcript_{k}"], str) for k in KINDS)
    assert row["cer_reference"] > 0.5  # random weights hear nothing: it really was this model listening


def test_scoring_treats_both_sides_alike():
    assert score_text("The 3rd of May, Mr. Smith's twenty-one cats!") == score_text(
        "the third of may mister smiths twenty one cats")
    assert score_text("<sil> hello [NOISE] world </s>") == "hello world"
    assert score_text("") == ""
    assert np.isclose(jiwer.cer(score_text("Hello, World."), score_text("hello world")), 0.0)
