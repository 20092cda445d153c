"""corpus synth -> prepare -> train -> say, end to end on a tiny flite corpus and a tiny model,
through the same CLI a user runs (its `main` in this process, and `say` as the console script in
a process of its own); plus resume after SIGKILL and 2-process data parallelism."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toktts.config import load_config
from toktts.corpus import read_corpus
from toktts.errors import TokttsError

from helpers import DEMO, sets, tiny_overrides, toktts, toktts_here


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("run") / "model"
    # Without the "no text" model that demo.yaml trains: the fine-tune below adds it.
    overrides = tiny_overrides(corpus, out, **{"train.text_dropout": 0, "generate.cfg_scale": 1.0})
    toktts_here("prepare", "--config", DEMO, *sets(overrides))
    toktts_here("train", "--config", DEMO, *sets(overrides))
    return out, overrides


def test_prepare_builds_a_cache_once(corpus, trained):
    _, overrides = trained
    proc = toktts_here("prepare", "--config", DEMO, *sets(overrides))
    assert "9 train / 1 val utterances" in proc.stdout  # val_size=2, capped at 10% of 10
    assert "reusing" in proc.stderr  # a rerun with the same config reuses the cache
    cfg = load_config([DEMO], overrides)
    from toktts.data import TokenDataset, cache_dir

    train = TokenDataset(cache_dir(cfg), "train", "chars")
    assert len(train) == 9
    codes = train.codes(0)
    assert codes.shape[0] == cfg.codec.n_codebooks and codes.max() < 32  # (K, T) codes within the codebook
    # frame_rate frames per second of audio
    seconds = sf.info(str(corpus / "wavs" / f"{train.ids[0]}.wav")).duration
    assert abs(codes.shape[1] - seconds * cfg.codec.frame_rate) <= 1


def test_train_writes_model_checkpoints_and_history(trained, corpus):
    out, _ = trained
    for name in ("config.json", "model.safetensors", "codec.safetensors"):
        assert (out / name).is_file()
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step-00000003", "step-00000006"]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert "val/loss" in history[2] and "val/acc_1" in history[5]
    assert all(np.isfinite(h["loss"]) for h in history)
    # long text is cut into chunks no longer than most training texts (their 75th percentile)
    lengths = sorted(len(u.normalized_text) for u in read_corpus(corpus))
    chunk_chars = json.loads((out / "config.json").read_text())["generate"]["chunk_chars"]
    assert lengths[0] <= chunk_chars <= lengths[-1]


def test_say_writes_a_wav(trained, tmp_path):
    out, _ = trained
    wav = tmp_path / "x.wav"
    proc = toktts("say", "Printing, in the only sense with which we are at present concerned.",
                  "--model", str(out), "-o", str(wav), "--seed", "1")
    audio, rate = sf.read(str(wav))
    assert rate == 24000 and audio.ndim == 1
    # the tiny model learned short texts, so this one is spoken in chunks: each at most
    # generate.max_seconds (to a whole codec frame), with pauses of at most 0.3 s between them
    match = re.search(r"(\d+) chunks", proc.stdout)
    chunks = int(match.group(1)) if match else 1
    assert 0 < len(audio) <= chunks * (2.0 * rate + 960) + (chunks - 1) * 0.3 * rate
    assert "stopped by" in proc.stdout


def test_python_api_and_old_pipeline_name(trained):
    out, _ = trained
    from toktts import TTS, text_to_speech_pipeline

    tts = TTS.from_pretrained(out)
    a = tts("Hello there, 42 times.", seed=3, temperature=0.9)
    b = tts("Hello there, 42 times.", seed=3, temperature=0.9)
    assert a["audio"].dtype == np.float32 and a["sampling_rate"] == 24000
    assert a["stop_reason"] in ("eos", "max_length")
    assert "forty-two" in a["text"]  # normalised before the model reads it
    np.testing.assert_array_equal(a["audio"], b["audio"])  # seeded
    pipe = text_to_speech_pipeline(out)
    c = pipe("Hello there, 42 times.", forward_params={"do_sample": False})
    assert set(c) >= {"audio", "sampling_rate"}
    with pytest.raises(Exception, match="unknown forward_params"):
        pipe("Hi.", forward_params={"beams": 4})


def test_samples_writes_generated_and_reference(trained, tmp_path):
    _, overrides = trained
    toktts_here("samples", "--config", DEMO, *sets(overrides), "--limit", "2", "--out", str(tmp_path / "s"))
    for split, rows in (("train", 2), ("val", 1)):  # --limit 2; the validation split has 1 row
        folder = tmp_path / "s" / split
        refs = sorted(folder.glob("*_ref.wav"))
        assert len(refs) == rows
        for ref in refs:
            utt = ref.name[: -len("_ref.wav")]
            assert (folder / f"{utt}.wav").is_file() and (folder / f"{utt}.txt").read_text().strip()


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_resume_after_sigkill_follows_the_same_curve(corpus, tmp_path):
    """Kill -9 mid-run, --resume, and the losses match an uninterrupted run step for step."""
    steps = {"train.max_steps": 24, "train.save_every": 2, "train.eval_every": 0}
    full = tiny_overrides(corpus, tmp_path / "full", **steps)
    toktts_here("prepare", "--config", DEMO, *sets(full))
    toktts_here("train", "--config", DEMO, *sets(full))
    reference = [h["loss"] for h in _history(tmp_path / "full")]

    out = tmp_path / "killed"
    killed = tiny_overrides(corpus, out, **steps)
    proc = subprocess.Popen([sys.executable, "-m", "toktts.cli", "train", "--config", DEMO, *sets(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "checkpoints" / "step-00000004").is_dir() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoints" / "step-00000004").is_dir()
    assert not (out / "model.safetensors").exists()  # it really was cut short
    toktts_here("train", "--config", DEMO, *sets(killed), "--resume")
    resumed = [h["loss"] for h in _history(out)]
    assert len(resumed) == 24
    np.testing.assert_allclose(resumed, reference, rtol=1e-4)


def test_train_from_a_token_cache_carried_without_the_corpus(trained, tmp_path):
    """data.tokens: the cache that prepare made, copied to another machine (here: folder) where
    neither the corpus nor its audio is, is all that training needs."""
    from toktts.data import cache_dir

    _, overrides = trained
    carried = tmp_path / "tokens"
    shutil.copytree(cache_dir(load_config([DEMO], overrides)), carried)
    out = tmp_path / "run"
    here = [o for o in overrides if not o.startswith(("data.corpus=", "data.cache_dir=", "train.output_dir="))]
    here += [f"data.tokens={carried}", f"data.corpus={tmp_path / 'not-here'}", f"train.output_dir={out}", "train.max_steps=2",
             "train.save_every=2", "train.eval_every=2"]
    toktts_here("train", "--config", DEMO, *sets(here))
    assert (out / "model.safetensors").is_file() and (out / "codec.safetensors").is_file()
    # tokens of another codec, or a folder that is no finished cache, are refused naming why
    with pytest.raises(TokttsError, match="made with codec.codebook_size=32, this config has 64"):
        cache_dir(load_config([DEMO], [*here, "codec.codebook_size=64"]))
    with pytest.raises(TokttsError, match="not a complete token cache"):
        cache_dir(load_config([DEMO], [*here, f"data.tokens={tmp_path}"]))
    # data.codec_from of another codec (the model's, its values changed) than the one the tokens were made with
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other-voice"
    shutil.copytree(trained[0], other)
    tensors = {k: v + 1 if v.dtype.kind == "f" else v for k, v in load_file(other / "codec.safetensors").items()}
    save_file(tensors, other / "codec.safetensors")
    with pytest.raises(TokttsError, match="not made with the codec of data.codec_from"):
        cache_dir(load_config([DEMO], [*here, f"data.codec_from={other}"]))
    (carried / "manifest.json").write_text("{")
    with pytest.raises(TokttsError, match="manifest.json is unreadable"):
        cache_dir(load_config([DEMO], here))


def test_corrupt_latest_checkpoint_is_a_clear_error(corpus, tmp_path):
    out = tmp_path / "run"
    overrides = tiny_overrides(corpus, out, **{"train.max_steps": 2, "train.save_every": 2})
    toktts_here("prepare", "--config", DEMO, *sets(overrides))
    toktts_here("train", "--config", DEMO, *sets(overrides))
    (out / "checkpoints" / "step-00000002" / "model.safetensors").write_bytes(b"garbage")
    proc = toktts_here("train", "--config", DEMO, *sets(overrides), "--resume", check=False)
    assert proc.returncode == 2
    assert "step-00000002" in proc.stderr and "Traceback" not in proc.stderr


def test_accelerate_launch_two_processes(corpus, tmp_path):
    out = tmp_path / "ddp"
    # schedule=time: both processes follow the main process's clock (a broadcast every step)
    overrides = tiny_overrides(corpus, out, **{"train.max_steps": 3, "train.save_every": 3, "train.eval_every": 3,
                                               "train.batch_frames": 80,  # several batches per epoch
                                               "train.schedule": "time", "train.max_minutes": 30})
    toktts_here("prepare", "--config", DEMO, *sets(overrides))
    # --multi_gpu selects accelerate's torchrun launcher; on a machine without GPUs the trainer
    # asks accelerate for CPU processes joined by gloo.
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
         "-m", "toktts.cli", "train", "--config", DEMO, *sets(overrides)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = _history(out)
    assert [h["step"] for h in history] == [1, 2, 3]  # one log line per step, from rank 0
    assert (out / "model.safetensors").is_file()
    assert "2 process(es)" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--config", DEMO, "--set", "train.max_stepz=3"], "unknown config key 'train.max_stepz'"),
        (["train", "--config", DEMO, "--set", "train.max_steps=many"], "'train.max_steps' must be a whole number"),
        (["train", "--config", DEMO, "--set", "train.input_noise=1.5"], "train.input_noise"),
        (["prepare", "--config", DEMO, "--set", "data.corpus=/nonexistent/corpus"], "/nonexistent/corpus"),
        (["say", "  ", "--model", "{model}"], "nothing to say"),
        (["say", "🙂🙂", "--model", "{model}"], "nothing to say"),
        (["say", "Hi.", "--model", "/nonexistent/model"], "does not exist"),
        (["say", "Hi.", "--model", "{empty}"], "incomplete"),
        (["say", "Hi.", "--model", "{model}", "--top-p", "0"], "top_p"),
        (["say", "Hi.", "--model", "{model}", "-o", "/nonexistent/dir/x.wav"], "/nonexistent/dir"),
        (["train", "--config", DEMO, "--set", "data.corpus={corpus}", "--set", "data.cache_dir={fresh}"],
         "run `toktts prepare`"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, trained, corpus, tmp_path):
    model, _ = trained
    (tmp_path / "empty").mkdir()
    fill = {"{model}": str(model), "{empty}": str(tmp_path / "empty"), "{corpus}": str(corpus),
            "{fresh}": str(tmp_path / "fresh")}
    args = [fill.get(a, a) for a in args]
    args = [a.replace("{corpus}", str(corpus)).replace("{fresh}", str(tmp_path / "fresh")) for a in args]
    proc = toktts_here(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1


def test_out_of_vocabulary_characters_are_dropped_not_fatal(trained):
    from toktts import TTS

    out, _ = trained
    result = TTS.from_pretrained(out)("Hello 世界 there.", seed=0)
    assert len(result["audio"]) > 0


def test_wall_clock_budget_and_gradient_accumulation(corpus, tmp_path):
    out = tmp_path / "budget"
    overrides = tiny_overrides(corpus, out, **{"train.max_steps": 1000, "train.max_minutes": 0.0001,
                                               "train.grad_accum": 2, "train.save_every": 1000})
    toktts_here("prepare", "--config", DEMO, *sets(overrides))
    proc = toktts_here("train", "--config", DEMO, *sets(overrides))
    assert "max_minutes" in proc.stderr
    history = _history(out)
    assert [h["step"] for h in history] == [1]  # stopped after the first step, far before max_steps
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000001"]  # saved on the way out
    assert (out / "model.safetensors").is_file()


def test_time_schedule_anneals_over_the_budget_of_all_legs(corpus, tmp_path):
    """schedule=time: the cosine spans max_minutes of training counted across --resume legs, so
    a resumed run that has had its minutes trains no further."""
    out = tmp_path / "timed"
    overrides = tiny_overrides(corpus, out, **{"train.max_steps": 1000, "train.max_minutes": 0.002,
                                               "train.schedule": "time", "train.save_every": 1000})
    toktts_here("prepare", "--config", DEMO, *sets(overrides))
    toktts_here("train", "--config", DEMO, *sets(overrides))
    steps = [h["step"] for h in _history(out)]
    assert steps and steps[-1] < 1000  # stopped by the clock
    (checkpoint,) = (out / "checkpoints").iterdir()
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == steps[-1] and state["minutes"] >= 0.002
    proc = toktts_here("train", "--config", DEMO, *sets(overrides), "--resume")
    assert "nothing to train" in proc.stderr
    assert [h["step"] for h in _history(out)] == steps

    # a leg stopped by train.leg_minutes, or by max_steps, with minutes left: the next leg goes on
    # counting from the minutes it had, on the same schedule
    legs = tmp_path / "legs"
    first = tiny_overrides(corpus, legs, **{"train.max_steps": 1000, "train.max_minutes": 30, "train.schedule": "time",
                                            "train.save_every": 1000, "train.leg_minutes": 0.002})
    proc = toktts_here("train", "--config", DEMO, *sets(first))
    assert "train.leg_minutes=0.002 reached; --resume goes on" in proc.stderr
    (checkpoint,) = (legs / "checkpoints").iterdir()
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    n, before = state["step"], state["minutes"]
    assert 1 <= n < 1000 and 0.002 <= before < 30
    toktts_here("train", "--config", DEMO, *sets(first), "--set", f"train.max_steps={n + 2}", "--set", "train.leg_minutes=0",
           "--resume")
    after = json.loads((legs / "checkpoints" / f"step-{n + 2:08d}" / "trainer_state.json").read_text())["minutes"]
    assert before < after < 30
    history = _history(legs)
    assert [h["step"] for h in history] == list(range(1, n + 3))


def test_two_processes_stop_together_on_the_clock(corpus, tmp_path):
    """Each process would stop on its own clock a step apart and wait forever for the other: they
    follow the main process's."""
    out = tmp_path / "ddp-clock"
    overrides = tiny_overrides(corpus, out, **{"train.max_steps": 100000, "train.max_minutes": 0.003,
                                               "train.schedule": "time", "train.batch_frames": 80,
                                               "train.save_every": 100000})
    toktts_here("prepare", "--config", DEMO, *sets(overrides))
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--dynamo_backend", "no", "-m", "toktts.cli", "train", "--config", DEMO,
         *sets(overrides)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max_minutes=0.003 reached" in proc.stderr
    steps = [h["step"] for h in _history(out)]
    assert steps and steps[-1] < 100000 and (out / "model.safetensors").is_file()


def test_fine_tune_with_every_lever_then_guided_say(trained, tmp_path):
    """A model fine-tuned from `trained` on tokens of its own codec, with the "no text" memory,
    CTC, phonemes from the encoder, self-sampling, input noise of neighbouring codes, codebook
    weights, input dropout, a fourth convolution in the encoder prenet (demo.yaml's three come
    from the base) and a second encoder block; then spoken with guidance."""
    base, overrides = trained
    out = tmp_path / "tuned"
    levers = dict(
        overrides_for(overrides, out),
        **{"data.codec_from": base, "train.init_from": base, "train.max_steps": 2, "train.text_dropout": 0.5,
           "train.ctc_weight": 0.5, "train.phoneme_weight": 0.5, "train.self_sampling": 0.5, "train.codebook_weights": "4,1,1,1",
           "train.input_noise": 0.3, "train.input_noise_near": 8,
           "model.input_dropout": 0.2, "model.enc_conv_layers": 4, "model.enc_layers": 2, "generate.cfg_scale": 2.0},
    )
    new = [f"{k}={v}" for k, v in levers.items()]
    proc = toktts_here("prepare", "--config", DEMO, *sets(new))
    assert "reusing" not in proc.stderr  # its own cache: the tokens of the base model's codec
    cfg = load_config([DEMO], new)
    from toktts.data import cache_dir

    assert (cache_dir(cfg) / "codec.safetensors").read_bytes() == (base / "codec.safetensors").read_bytes()
    toktts_here("train", "--config", DEMO, *sets(new))
    history = _history(out)
    assert all(np.isfinite(h["loss"]) and h["ctc"] > 0 and h["phon"] > 0 for h in history)
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["unconditional"] and saved["model"]["ctc_head"] and saved["model"]["phoneme_head"]
    assert saved["model"]["enc_conv_layers"] == 4 and saved["model"]["enc_layers"] == 2
    assert saved["generate"]["cfg_scale"] == 2.0
    wav = tmp_path / "g.wav"
    toktts_here("say", "Hello there.", "--model", str(out), "-o", str(wav), "--seed", "3")
    again = tmp_path / "g2.wav"
    toktts_here("say", "Hello there.", "--model", str(out), "-o", str(again), "--seed", "3")
    assert np.array_equal(sf.read(str(wav))[0], sf.read(str(again))[0])
    # guidance needs the unconditional model: the base model has none
    proc = toktts_here("say", "Hi.", "--model", str(base), "--cfg-scale", "2", "-o", str(tmp_path / "x.wav"), check=False)
    assert proc.returncode == 2 and "text_dropout" in proc.stderr and "Traceback" not in proc.stderr


def test_init_from_a_model_of_another_size_is_one_clear_line(trained, tmp_path):
    base, overrides = trained
    new = [f"{k}={v}" for k, v in dict(overrides_for(overrides, tmp_path / "x"), **{
        "train.init_from": base, "model.dec_dim": 64}).items()]
    proc = toktts_here("train", "--config", DEMO, *sets(new), check=False)
    assert proc.returncode == 2 and "does not fit this model" in proc.stderr and "Traceback" not in proc.stderr


def overrides_for(overrides: list[str], out: Path) -> dict[str, str]:
    """The fixture's `--set` values as a dict, writing to `out`."""
    settings = dict(item.split("=", 1) for item in overrides)
    settings["train.output_dir"] = str(out)
    return settings
