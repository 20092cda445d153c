"""Voices: a voice is a model directory with a name.

The names known here are the bundled voice ("demo"), every model directory inside the voices
folder (`$TOKTTS_VOICES`, default `~/.cache/toktts/voices`; the subdirectory's name is the voice's
name), and any given by the caller (`serve --voice NAME=DIR`). `toktts voices` lists them;
`say --voice NAME` and the server's `voice` field choose one.
"""
from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from toktts.errors import TokttsError

BUNDLED_VOICE = "demo"
# OpenAI's voice names: a client written for OpenAI sends one of these, and gets the default voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def bundled_voice_dir() -> Path:
    return Path(str(resources.files("toktts") / "voices" / BUNDLED_VOICE))


def voices_dir() -> Path:
    """The folder of installed voices: $TOKTTS_VOICES, else $XDG_CACHE_HOME/toktts/voices."""
    if os.environ.get("TOKTTS_VOICES"):
        return Path(os.environ["TOKTTS_VOICES"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "toktts" / "voices"


def _usable(name: str) -> bool:
    return bool(_NAME.match(name)) and name not in OPENAI_VOICES


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise TokttsError(f"voice name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a "
                          "letter or digit")
    if name in OPENAI_VOICES:
        raise TokttsError(f"voice name {name!r} is one of OpenAI's, which name the default voice here; choose another")
    return name


def parse_voice_arg(arg: str) -> tuple[str, Path]:
    """`NAME=DIR` -> (name, directory), checked."""
    name, sep, directory = arg.partition("=")
    if not sep or not directory:
        raise TokttsError(f"--voice expects NAME=DIR (a model directory), got {arg!r}")
    path = Path(directory).expanduser()
    if not (path / "config.json").is_file():
        raise TokttsError(f"--voice {arg!r}: {str(path)!r} is not a model directory (no config.json)")
    return check_name(name.strip()), path


def find_voices(extra: dict[str, Path] | None = None) -> dict[str, Path]:
    """Every known voice, name -> model directory: the bundled one, the voices folder's, then
    `extra` (which win on a name clash)."""
    found: dict[str, Path] = {}
    if (bundled_voice_dir() / "config.json").is_file():
        found[BUNDLED_VOICE] = bundled_voice_dir()
    folder = voices_dir()
    if folder.is_dir():
        for sub in sorted(folder.iterdir()):
            if (sub / "config.json").is_file() and _usable(sub.name):
                found[sub.name] = sub
    found.update(extra or {})
    return found


def voice_dir(name: str, extra: dict[str, Path] | None = None) -> Path:
    """The model directory of voice `name`; a TokttsError listing the known ones otherwise."""
    known = find_voices(extra)
    if name not in known:
        raise TokttsError(f"unknown voice {name!r}; the voices here are: {', '.join(known) or 'none'} "
                          f"(add one by putting a model directory in {str(voices_dir())!r})")
    return known[name]


def describe(path: Path) -> dict:
    """What a voice directory holds, read from its config.json (nothing is loaded)."""
    try:
        meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
        codec, model = meta["codec"], meta["model"]
        weights = (path / "model.safetensors").stat().st_size
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {"path": str(path), "error": f"unreadable ({type(e).__name__})"}
    return {
        "path": str(path), "codec": codec.get("name"), "sampling_rate": codec.get("sample_rate"),
        "size_mb": round(weights / 2**20, 1), "guidance": bool(model.get("unconditional")),
    }
