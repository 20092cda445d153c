"""Faults: SIGKILL at the worst moments, a full disk, unwritable places, damaged checkpoints and
model directories. A killed run resumes onto the same loss curve; every other fault is one clear
line (or a warning); nothing already written is lost."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from toktts.checkpoint import checkpoint_dirs, load_latest_checkpoint, load_model_dir
from toktts.cli import main
from toktts.config import load_config
from toktts.data import TokenDataset, cache_dir, prepare
from toktts.errors import TokttsError
from toktts.model import TokTTS
from toktts.train import complete_model_config, train

from helpers import DEMO, assert_one_error_line, sets, tiny_overrides, toktts, toktts_here

STEPS = {"train.max_steps": 8, "train.save_every": 2, "train.eval_every": 0}  # keep_last: 2

# Runs the CLI with os.replace patched to stop for good just before the rename whose destination
# ends with argv[1]: the moment a file or a checkpoint is written under its temporary name but
# not yet committed. It touches argv[2] when it gets there, so the test can SIGKILL it right then.
STOP_BEFORE_RENAME = """
import os, sys, time
from toktts.cli import main
target, ready = sys.argv[1], sys.argv[2]
rename = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(target):
        open(ready, "w").close()
        time.sleep(3600)
    return rename(src, dst, *args, **kwargs)
os.replace = replace
sys.exit(main(sys.argv[3:]))
"""


def kill_before_rename(target: str, *args: str, ready: Path) -> None:
    """Run `toktts ARGS` and SIGKILL it just before it renames something onto `...target`."""
    proc = subprocess.Popen([sys.executable, "-c", STOP_BEFORE_RENAME, target, str(ready), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert ready.exists(), f"never reached the rename onto {target!r}:\n{stderr[-3000:]}"
    ready.unlink()


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "history.jsonl").read_text().splitlines()]


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def contents(directory: Path, *ignore: str) -> dict[str, bytes]:
    """Every file under `directory` (hidden ones too) by relative path, except those in `ignore`."""
    files = (p for p in sorted(directory.rglob("*")) if p.is_file())
    return {name: p.read_bytes() for p in files if (name := str(p.relative_to(directory))) not in ignore}


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> tuple[Path, list[float]]:
    """An uninterrupted 8-step run (checkpoints at steps 6 and 8 kept): its directory and losses."""
    out = tmp_path_factory.mktemp("reference") / "run"
    overrides = tiny_overrides(corpus, out, **STEPS)
    prepare(load_config([DEMO], overrides), progress=False)
    toktts_here("train", "--config", DEMO, *sets(overrides))
    return out, losses(out)


def copy_of(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


# -- SIGKILL ------------------------------------------------------------------------------------


def test_killed_while_saving_resumes_from_the_last_whole_checkpoint_on_the_same_curve(corpus, reference, tmp_path):
    out = tmp_path / "run"
    run = ["train", "--config", DEMO, *sets(tiny_overrides(corpus, out, **STEPS))]
    ready = tmp_path / "ready"

    # Killed while writing step 4's checkpoint: its weights are written, its optimizer state is not.
    kill_before_rename(".step-00000004.tmp/model.safetensors", *run, ready=ready)
    assert names(checkpoint_dirs(out)) == ["step-00000002"]

    # Killed when step 6's checkpoint is complete under its temporary name, just before the rename.
    kill_before_rename("checkpoints/step-00000006", *run, "--resume", ready=ready)
    assert names(checkpoint_dirs(out)) == ["step-00000002", "step-00000004"]
    assert (out / "checkpoints" / ".step-00000006.tmp" / "trainer_state.json").is_file()

    # Killed while the final model directory is being replaced: config.json, renamed last, is missing.
    kill_before_rename(f"{out.name}/config.json", *run, "--resume", ready=ready)
    assert names(checkpoint_dirs(out)) == ["step-00000006", "step-00000008"]
    with pytest.raises(TokttsError, match="incomplete"):
        load_model_dir(out)

    toktts_here(*run, "--resume")
    np.testing.assert_allclose(losses(out), reference[1], rtol=1e-4)  # one line per step, as if never killed
    assert names(checkpoint_dirs(out)) == ["step-00000006", "step-00000008"]
    assert not [p for p in out.rglob(".*")]  # every temporary file and directory is gone
    load_model_dir(out)


def test_killed_prepare_resumes_without_redoing_finished_shards(corpus, tmp_path):
    overrides = [f"data.corpus={corpus}", f"data.cache_dir={tmp_path / 'cache'}", "data.val_size=1",
                 "codec.codebook_size=16", "data.shard_size=3"]
    cfg = load_config([DEMO], overrides)
    root = cache_dir(cfg)
    kill_before_rename("train-00001", "prepare", "--config", DEMO, *sets(overrides), ready=tmp_path / "ready")
    assert (root / "train-00000" / "meta.json").is_file() and (root / "train-00001.tmp" / "meta.json").is_file()
    assert not (root / "manifest.json").exists()
    with pytest.raises(TokttsError, match="incomplete"):
        TokenDataset(root, "train", "chars")  # never trusted without its manifest
    finished = (root / "train-00000" / "codes.npy").stat().st_mtime_ns

    prepare(cfg, progress=False)
    assert (root / "train-00000" / "codes.npy").stat().st_mtime_ns == finished  # not redone
    resumed = TokenDataset(root, "train", "chars")
    whole = TokenDataset(prepare(load_config([DEMO], [*overrides, f"data.cache_dir={tmp_path / 'ref'}"]),
                                 progress=False), "train", "chars")
    assert resumed.ids == whole.ids and len(resumed) == 9
    for i in range(len(whole)):
        np.testing.assert_array_equal(resumed.codes(i), whole.codes(i))


# -- a full disk, unwritable places ------------------------------------------------------------


def test_full_disk_while_training_keeps_the_checkpoints_and_model_already_written(corpus, reference, tmp_path):
    out = copy_of(reference[0], tmp_path)
    run = ["train", "--config", DEMO, *sets(tiny_overrides(corpus, out, **STEPS)), "--resume"]
    written = contents(out, "train_config.json")  # rewritten by every run with its own settings
    # Model and codec files (over 100 kB) no longer fit; the small history and config files still do.
    proc = toktts(*run, max_file_bytes=64_000, check=False)  # only the final model is left to save
    assert_one_error_line(proc, f"could not write {str(out)!r} (File too large)",
                          "free some space or choose another train.output_dir")
    assert contents(out, "train_config.json") == written  # the model directory is whole, no staging left

    shutil.rmtree(out / "checkpoints" / "step-00000008")  # now step 8's checkpoint is to be written
    written = contents(out, "history.jsonl")
    proc = toktts(*run, max_file_bytes=64_000, check=False)
    assert_one_error_line(proc, f"could not write {str(out / 'checkpoints')!r} (File too large)", "free some space")
    assert contents(out, "history.jsonl") == written  # checkpoint 6 and the model are whole, no step 8
    np.testing.assert_allclose(losses(out), reference[1], rtol=1e-4)  # steps 7 and 8 were redone and logged


def test_full_disk_while_preparing_keeps_the_finished_shards(corpus, tmp_path):
    overrides = [f"data.corpus={corpus}", f"data.cache_dir={tmp_path / 'cache'}", "data.val_size=1",
                 "codec.codebook_size=16", "data.shard_size=3"]
    cfg = load_config([DEMO], overrides)
    root = prepare(cfg, progress=False)
    (root / "manifest.json").unlink()  # as if interrupted before the last shard
    shutil.rmtree(root / "val-00000")
    written = contents(root)
    proc = toktts("prepare", "--config", DEMO, *sets(overrides), max_file_bytes=100, check=False)
    assert_one_error_line(proc, f"could not write {str(root)!r} (File too large)",
                          "free some space or choose another data.cache_dir")
    assert contents(root) == written  # finished shards untouched, no partial shard or manifest
    prepare(cfg, progress=False)
    assert len(TokenDataset(root, "val", "chars")) == 1


def test_full_disk_while_saying_leaves_the_old_file(reference, tmp_path):
    wav = tmp_path / "hello.wav"
    wav.write_bytes(b"an earlier take")
    proc = toktts("say", "Hello.", "--model", str(reference[0]), "-o", str(wav), max_file_bytes=1000, check=False)
    assert_one_error_line(proc, f"could not write {str(wav)!r} (File too large)", "free some space")
    assert wav.read_bytes() == b"an earlier take"
    assert os.listdir(tmp_path) == ["hello.wav"]


def test_a_voice_that_gives_only_silence_is_one_line_and_no_file(tmp_path):
    from helpers import mute_tts

    mute_tts().save_pretrained(tmp_path / "mute")
    # Two chunks (60 characters at most): the pause between them is not speech either.
    text = "Hello there, this is the first of two sentences. And here is the second one."
    proc = toktts_here("say", text, "--model", str(tmp_path / "mute"), "--seed", "4", "--retries", "1",
                       "-o", str(tmp_path / "x.wav"), check=False)
    assert_one_error_line(proc, "the voice gave only silence for 'Hello there, this is the first of two",
                          "(every take, seed 4)", "another seed")
    assert not (tmp_path / "x.wav").exists()
    streamed = toktts("say", "Hello there.", "--model", str(tmp_path / "mute"), "--seed", "4", "--stream",
                      "-o", str(tmp_path / "y.wav"), check=False)
    assert_one_error_line(streamed, "the voice gave only silence for 'Hello there.'")
    assert not (tmp_path / "y.wav").exists() and streamed.stdout == ""


@pytest.mark.parametrize("command", ["train", "prepare", "say"])
def test_an_unwritable_place_is_one_line_naming_it(command, corpus, reference, tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a directory")
    target = tmp_path / "file" / "x"
    args = {
        "train": ["train", "--config", DEMO, *sets(tiny_overrides(corpus, target, **STEPS))],
        "prepare": ["prepare", "--config", DEMO, "--set", f"data.corpus={corpus}", "--set", f"data.cache_dir={target}"],
        "say": ["say", "Hi.", "--model", str(reference[0]), "-o", str(target)],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not write '{target}") and "(Not a directory)" in err  # the cache: x/<key>
    assert len(err.strip().splitlines()) == 1


# -- damaged checkpoints and model directories --------------------------------------------------


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeroed":  # same length, a block of zeros in the middle: what a power cut can leave
        path.write_bytes(data[: len(data) // 2] + bytes(4096) + data[len(data) // 2 + 4096 :])
    elif how == "garbage":
        path.write_bytes(b"\x00garbage")
    else:  # valid JSON of the wrong kind
        path.write_text(how)


def model_and_optimizer(out: Path, corpus: Path, **settings) -> tuple[TokTTS, torch.optim.Optimizer]:
    cfg = complete_model_config(load_config([DEMO], tiny_overrides(corpus, out, **{**STEPS, **settings})))
    model = TokTTS(cfg.model)
    return model, torch.optim.AdamW(model.parameters())


@pytest.mark.parametrize("file, how", [
    ("model.safetensors", "truncated"), ("model.safetensors", "zeroed"),
    ("optimizer.pt", "truncated"), ("optimizer.pt", "zeroed"), ("trainer_state.json", "garbage"),
    ("trainer_state.json", "[]"),
])
def test_a_damaged_checkpoint_falls_back_to_the_one_before(file, how, corpus, reference, tmp_path, caplog):
    out = copy_of(reference[0], tmp_path)
    damaged = out / "checkpoints" / "step-00000008" / file
    damage(damaged, how)
    model, optimizer = model_and_optimizer(out, corpus)
    with caplog.at_level(logging.WARNING, logger="toktts.checkpoint"):
        path, state = load_latest_checkpoint(out, model, optimizer)
    assert path.name == "step-00000006" and state["step"] == 6
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"checkpoint file {str(damaged)!r} is damaged" in warning and "the checkpoint before it" in warning
    assert optimizer.state  # loaded


def test_resume_past_a_damaged_checkpoint_follows_the_same_curve(corpus, reference, tmp_path):
    out = copy_of(reference[0], tmp_path)
    damage(out / "checkpoints" / "step-00000008" / "model.safetensors", "truncated")
    proc = toktts_here("train", "--config", DEMO, *sets(tiny_overrides(corpus, out, **STEPS)), "--resume")
    assert "step-00000008/model.safetensors' is damaged" in proc.stderr
    np.testing.assert_allclose(losses(out), reference[1], rtol=1e-4)
    model, optimizer = model_and_optimizer(out, corpus)
    assert load_latest_checkpoint(out, model, optimizer)[0].name == "step-00000008"  # rewritten whole


def test_a_checkpoint_made_with_other_settings_is_a_clear_error_not_damage(corpus, reference):
    model, optimizer = model_and_optimizer(reference[0], corpus, **{"model.dec_dim": 64})
    with pytest.raises(TokttsError, match="step-00000008' does not fit the configured model"):
        load_latest_checkpoint(reference[0], model, optimizer)


def test_a_new_run_into_a_directory_with_checkpoints_needs_resume(corpus, reference):
    cfg = load_config([DEMO], tiny_overrides(corpus, reference[0], **STEPS))
    with pytest.raises(TokttsError, match="already holds the checkpoints of a run; pass --resume"):
        train(cfg, progress=False)  # it would prune them and overwrite the model


@pytest.mark.parametrize("file, how, message", [
    ("model.safetensors", "truncated", "cannot read weights"),
    ("model.safetensors", "garbage", "cannot read weights"),
    ("config.json", "truncated", "is not a model config"),
    ("config.json", "[]", "is not a model config"),
    ("config.json", "7 heads", "describes no valid model"),
    ("config.json", "no model section", "lacks the section(s) model"),
    ("codec.safetensors", "truncated", "mel codec state"),
])
def test_a_damaged_model_directory_is_one_line_for_say(file, how, message, reference, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "codec.safetensors"):
        shutil.copy(reference[0] / name, model / name)
    if how == "7 heads":
        config = json.loads((model / file).read_text())
        config["model"]["enc_heads"] = 7
        (model / file).write_text(json.dumps(config))
    elif how == "no model section":
        config = json.loads((model / file).read_text())
        del config["model"]
        (model / file).write_text(json.dumps(config))
    else:
        damage(model / file, how)
    assert main(["say", "Hi.", "--model", str(model), "-o", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and str(model / file) in err
    assert len(err.strip().splitlines()) == 1
