"""Model directories and training checkpoints on disk, written so that a crash never leaves
something a later run would trust.

A model directory (Hugging Face Hub style) is everything needed to synthesize:

    config.json         the whole Config (model sizes, codec, text settings, sampling defaults)
                        plus the text vocabulary; written last, so its presence means complete
    model.safetensors   weights (fp32, or bf16 for shipping)
    codec.safetensors   the mel codec's codebooks (mel only)

A training checkpoint is a directory `checkpoints/step-00000100/` holding a model directory plus
`optimizer.pt` and `trainer_state.json`; it is written under a temporary name and renamed.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from toktts.codecs import Codec, build_codec
from toktts.config import Config, config_from_dict
from toktts.errors import TokttsError
from toktts.model import TokTTS
from toktts.text import VOCAB

FORMAT_VERSION = 1


def save_model_dir(
    directory: str | Path, model: TokTTS, cfg: Config, codec: Codec, dtype: torch.dtype | None = None
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.json"
    config_path.unlink(missing_ok=True)  # the directory is incomplete until config.json is back
    codec.save(directory)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
             for k, v in unwrap(model).state_dict().items()}
    tmp = directory / ".model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / "model.safetensors")
    meta = {"format_version": FORMAT_VERSION, "text_vocab": list(VOCAB.chars), **cfg.to_dict()}
    tmp = directory / ".config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, config_path)
    return directory


def unwrap(model: torch.nn.Module) -> TokTTS:
    """The plain model under DDP / torch.compile wrappers (their weights are the same tensors)."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def load_model_dir(directory: str | Path, device: str | torch.device = "cpu") -> tuple[TokTTS, Config, Codec]:
    directory = Path(directory)
    if not directory.is_dir():
        raise TokttsError(f"model directory {str(directory)!r} does not exist; pass a trained model directory")
    config_path, weights = directory / "config.json", directory / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise TokttsError(
            f"model directory {str(directory)!r} is incomplete (needs config.json and model.safetensors); "
            "pass a finished model directory or train one with `toktts train`"
        )
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError:
        raise TokttsError(f"{str(config_path)!r} is not valid JSON; the model directory is damaged") from None
    vocab = meta.pop("text_vocab", None)
    meta.pop("format_version", None)
    if vocab is not None and list(vocab) != list(VOCAB.chars):
        raise TokttsError(
            f"model {str(directory)!r} was trained with another text vocabulary; use the toktts version "
            "that trained it or retrain"
        )
    cfg = config_from_dict(meta)
    model = TokTTS(cfg.model)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise TokttsError(f"cannot read weights {str(weights)!r} ({e}); the file is damaged, retrain or re-download") from None
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError:
        raise TokttsError(f"weights {str(weights)!r} do not match config.json; the model directory is damaged") from None
    codec = build_codec(cfg.codec, directory if cfg.codec.name == "mel" else None)
    return model.to(device).eval(), cfg, codec.to(device)


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if p.is_dir() and (p / "trainer_state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(
    output_dir: str | Path, step: int, model: TokTTS, cfg: Config, codec: Codec,
    optimizer: torch.optim.Optimizer, state: dict, keep_last: int,
) -> Path:
    root = Path(output_dir) / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model_dir(tmp, model, cfg, codec)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoint_dirs(output_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: TokTTS, optimizer: torch.optim.Optimizer) -> dict:
    try:
        state = load_file(str(path / "model.safetensors"))
        unwrap(model).load_state_dict(state)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        return json.loads((path / "trainer_state.json").read_text())
    except Exception as e:  # a damaged checkpoint must not crash with a library traceback
        raise TokttsError(
            f"checkpoint {str(path)!r} is damaged ({type(e).__name__}); delete it to resume from the one before"
        ) from None
