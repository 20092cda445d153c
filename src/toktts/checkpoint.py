"""Model directories and training checkpoints on disk, written so that a crash never leaves
something a later run would trust.

A model directory (Hugging Face Hub style) is everything needed to synthesize:

    config.json         the whole Config (model sizes, codec, text settings, sampling defaults)
                        plus the text vocabulary; written last, so its presence means complete
    model.safetensors   weights: fp32, or for shipping bf16 / fp16 / int8 (per-row scales)
    codec.safetensors   the mel codec's codebooks (mel only; fp16 in a shipped directory)

A training checkpoint is a directory `checkpoints/step-00000100/` holding a model directory plus
`optimizer.pt` and `trainer_state.json`; it is written under a temporary name and renamed, so a
SIGKILL at any moment leaves either the whole checkpoint or none. `trainer_state.json` also holds
the SHA-256 of the weights and optimizer files: a checkpoint damaged some other way (a power cut
before the data reached the disk, a disk error, a hand edit) is recognised on resume, which then
falls back to the checkpoint before it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from toktts.codecs import Codec, build_codec
from toktts.config import Config, config_from_dict
from toktts.errors import TokttsError
from toktts.model import TokTTS
from toktts.phonemes import espeak_version, text_vocab

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
CHECKSUMMED = ("model.safetensors", "optimizer.pt")


class DamagedCheckpoint(TokttsError):
    """A checkpoint file that does not read back whole: cut short, overwritten, or failing its checksum."""


VAL_IDS = "val_ids.txt"  # in a model directory: the ids of the utterances its training held out


def save_model_dir(
    directory: str | Path,
    model: TokTTS,
    cfg: Config,
    codec: Codec,
    dtype: torch.dtype | str | None = None,
    val_ids: list[str] | None = None,
) -> Path:
    """Write a model directory; `dtype` shrinks it for shipping: torch.bfloat16 / torch.float16
    weights, or "int8" (weight matrices quantized per row, see `quantize_int8`), with the codec's
    state in fp16 either way. Loading always gives fp32 weights. `val_ids`: the utterances training
    held out, written to val_ids.txt for `toktts evaluate` (a corpus that grows later would split
    otherwise). All files are first written to a staging folder inside it and then
    renamed into place, config.json last: a kill or a full disk while writing leaves the previous
    contents whole, and a kill during the renames leaves the directory without config.json, which
    `load_model_dir` refuses as incomplete."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".saving-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=".saving-", dir=directory))
    try:
        codec.save(stage, dtype=None if dtype is None else torch.float16)
        state = unwrap(model).state_dict()
        if dtype == "int8":
            state = quantize_int8(state)
        elif dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        state = {k: v.contiguous() for k, v in state.items()}
        (stage / "model.safetensors").write_bytes(safetensors.torch.save(state, metadata={"format": "pt"}))
        meta = {"format_version": FORMAT_VERSION, "text_vocab": list(text_vocab(cfg.model.text_input).chars), **cfg.to_dict()}
        if cfg.model.text_input == "phonemes":  # what espeak-ng writes changes between versions
            meta["espeak_version"] = espeak_version()
        if val_ids is not None:
            (stage / VAL_IDS).write_text("".join(f"{i}\n" for i in val_ids))
        (stage / "config.json").write_text(json.dumps(meta, indent=2))
        (directory / "config.json").unlink(missing_ok=True)  # incomplete until config.json is back
        for name in sorted(os.listdir(stage), key=lambda name: name == "config.json"):
            os.replace(stage / name, directory / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return directory


def held_out_ids(directory: str | Path) -> list[str] | None:
    """The ids a model directory's training held out (`save_model_dir`'s val_ids), or None when
    it does not say (models saved before it did, checkpoints)."""
    path = Path(directory) / VAL_IDS
    return path.read_text().split() if path.is_file() else None


INT8_SCALE = ".int8_scale"  # the key suffix of a quantized matrix's per-row scales


def quantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Store every float matrix (linear and embedding weights: nearly all parameters) as int8
    with one fp32 scale per row, max |w| / 127: the rounding error is under 0.4% of the row's
    largest weight. Vectors (biases, norms) stay bf16."""
    out = {}
    for name, v in state.items():
        if v.is_floating_point() and v.dim() == 2:
            scale = v.float().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127  # (rows, 1)
            out[name] = torch.round(v.float() / scale).to(torch.int8)
            out[name + INT8_SCALE] = scale
        else:
            out[name] = v.to(torch.bfloat16) if v.is_floating_point() else v
    return out


def dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 weights from what `save_model_dir` wrote, in any of its dtypes."""
    out = {}
    for name, v in state.items():
        if name.endswith(INT8_SCALE):
            continue
        scale = state.get(name + INT8_SCALE)
        out[name] = v.float() * scale if scale is not None else v.float()
    return out


def unwrap(model: torch.nn.Module) -> TokTTS:
    """The plain model under DDP / torch.compile wrappers (their weights are the same tensors)."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def load_model_dir(directory: str | Path, device: str | torch.device = "cpu") -> tuple[TokTTS, Config, Codec]:
    """The model, config and codec of a model directory; a TokttsError naming the file if it is
    missing, incomplete or damaged."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TokttsError(f"model directory {str(directory)!r} does not exist; pass a trained model directory")
    config_path, weights = directory / "config.json", directory / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise TokttsError(
            f"model directory {str(directory)!r} is incomplete (needs config.json and model.safetensors); "
            "pass a finished model directory or train one with `toktts train`"
        )
    damaged = "the model directory is damaged; retrain, re-download or pass another --model"
    try:
        meta = json.loads(config_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TokttsError(f"{str(config_path)!r} is not a model config ({e}); {damaged}") from None
    vocab = meta.pop("text_vocab", None)
    meta.pop("format_version", None)
    trained_espeak = meta.pop("espeak_version", None)
    missing = [name for name in ("data", "codec", "model", "generate") if not isinstance(meta.get(name), dict)]
    if missing:
        raise TokttsError(f"{str(config_path)!r} lacks the section(s) {', '.join(missing)}; {damaged}")
    try:
        # Only what synthesis reads is checked: a good model is not "damaged" because of a
        # training setting (a tracker, a lever) that this version's rules do not know.
        cfg = config_from_dict(meta, sections=("codec", "model", "generate"))
        if min(cfg.model.text_vocab_size, cfg.model.n_codebooks, cfg.model.codebook_size) < 1:
            raise TokttsError("model vocabulary sizes are not filled in")
    except TokttsError as e:
        raise TokttsError(f"{str(config_path)!r} describes no valid model ({e}); {damaged}") from None
    if vocab is not None and list(vocab) != list(text_vocab(cfg.model.text_input).chars):
        raise TokttsError(
            f"model {str(directory)!r} was trained with another text vocabulary; use the toktts version "
            "that trained it or retrain"
        )
    if cfg.model.text_input == "phonemes" and trained_espeak != espeak_version():
        log.warning("model %s was trained on the phonemes of espeak-ng %s, this is %s: it may read some words "
                    "otherwise", directory, trained_espeak, espeak_version())
    try:
        model = TokTTS(cfg.model)
    except (AssertionError, RuntimeError, ValueError) as e:  # e.g. a width not divisible by the heads
        raise TokttsError(f"{str(config_path)!r} describes no valid model ({e}); {damaged}") from None
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise TokttsError(f"cannot read weights {str(weights)!r} ({e}); {damaged}") from None
    try:
        model.load_state_dict(dequantize(state))
    except RuntimeError:
        raise TokttsError(f"weights {str(weights)!r} do not match config.json; {damaged}") from None
    codec = build_codec(cfg.codec, directory if cfg.codec.name == "mel" else None)
    return model.to(device).eval(), cfg, codec.to(device)


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run (those with trainer_state.json, written last), oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if p.is_dir() and (p / "trainer_state.json").is_file()]
    return sorted(done, key=_step_of)


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def save_checkpoint(
    output_dir: str | Path, step: int, model: TokTTS, cfg: Config, codec: Codec,
    optimizer: torch.optim.Optimizer, state: dict, keep_last: int,
) -> Path:
    """Write `checkpoints/step-<step>/` and keep the last `keep_last` up to this step.
    If writing fails (a full disk), the partial checkpoint is removed and the error raised;
    the earlier checkpoints are untouched."""
    root = Path(output_dir) / "checkpoints"
    final = root / f"step-{step:08d}"
    for stale in root.glob(".step-*.tmp"):  # left by a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".step-{step:08d}.tmp"
    try:
        save_model_dir(tmp, model, cfg, codec)
        buffer = io.BytesIO()  # through Python's file API: a full disk raises OSError (see toktts.files)
        torch.save(optimizer.state_dict(), buffer)
        (tmp / "optimizer.pt").write_bytes(buffer.getvalue())
        checksums = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in CHECKSUMMED}
        (tmp / "trainer_state.json").write_text(json.dumps({**state, "sha256": checksums}))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back
        raise
    shutil.rmtree(final, ignore_errors=True)  # a damaged checkpoint of this step, skipped on resume
    os.replace(tmp, final)
    # Count only checkpoints up to this step: a newer one is a damaged one that resume skipped,
    # and it must not push the checkpoint just written out of the last `keep_last`.
    done = [p for p in checkpoint_dirs(output_dir) if _step_of(p) <= step]
    for old in done[:-keep_last] if keep_last > 0 else []:
        (old / "trainer_state.json").unlink(missing_ok=True)  # first, so a half-deleted one is never taken as complete
        shutil.rmtree(old, ignore_errors=True)
    return final


def _read_part(path: Path, checksums: dict[str, str], parse: Callable[[bytes], Any]) -> Any:
    """One checkpoint file, checked against its checksum and parsed; DamagedCheckpoint if not whole."""
    try:
        data = path.read_bytes()
        if path.name in checksums and hashlib.sha256(data).hexdigest() != checksums[path.name]:
            raise ValueError("its SHA-256 differs from the one in trainer_state.json")
        return parse(data)
    except Exception as e:  # whatever the file's reader raises on a truncated or overwritten file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DamagedCheckpoint(f"checkpoint file {str(path)!r} is damaged ({reason})") from None


def _trainer_state(data: bytes) -> dict:
    state = json.loads(data)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise ValueError("it holds no step number")
    return state


def load_checkpoint(path: Path, model: TokTTS, optimizer: torch.optim.Optimizer) -> dict:
    """Load the checkpoint at `path` into `model` and `optimizer`; returns its trainer state.
    Raises DamagedCheckpoint if a file does not read back whole (nothing is loaded then), and
    TokttsError if the checkpoint was made with other model settings."""
    state = _read_part(path / "trainer_state.json", {}, _trainer_state)
    checksums = state.get("sha256", {})  # absent in checkpoints written before checksums
    weights = _read_part(path / "model.safetensors", checksums, safetensors.torch.load)
    optimizer_state = _read_part(
        path / "optimizer.pt", checksums, lambda data: torch.load(io.BytesIO(data), weights_only=True)
    )
    try:
        unwrap(model).load_state_dict(weights)
        optimizer.load_state_dict(optimizer_state)
    except (RuntimeError, ValueError, KeyError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TokttsError(
            f"checkpoint {str(path)!r} does not fit the configured model ({reason}); resume with the "
            "settings it was trained with (its config.json) or choose another train.output_dir"
        ) from None
    return state


def load_latest_checkpoint(
    output_dir: str | Path, model: TokTTS, optimizer: torch.optim.Optimizer
) -> tuple[Path, dict] | None:
    """Load the newest checkpoint of the run that reads back whole; its path and trainer state,
    or None if the run has no checkpoint.

    A damaged checkpoint is skipped with a warning and the one before it is used; training then
    overwrites the damaged one when it reaches its step again. If every checkpoint is damaged
    the error names the oldest."""
    checkpoints = checkpoint_dirs(output_dir)
    for path in reversed(checkpoints):
        try:
            return path, load_checkpoint(path, model, optimizer)
        except DamagedCheckpoint as e:
            if path == checkpoints[0]:
                raise DamagedCheckpoint(
                    f"{e}; no earlier checkpoint to resume from: delete {str(path.parent)!r} to train from scratch"
                ) from None
            log.warning("%s; resuming from the checkpoint before it", e)
    return None
