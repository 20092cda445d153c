"""Fixtures shared by several test modules."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from toktts.corpus import packaged_transcripts, synth_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Ten short LJSpeech sentences spoken by flite. Shared: copy it before breaking anything."""
    root = tmp_path_factory.mktemp("corpus")
    rows = sorted(packaged_transcripts("train"), key=lambda r: len(r[1]))[:10]
    texts = root / "texts.txt"
    texts.write_text("".join(f"{i}|{t}\n" for i, t in rows))
    return synth_corpus(root / "slt", texts=texts, progress=False)


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Iterator[Path]:
    """Decoder-step graphs exported on first use go here, not to ~/.cache (subprocesses inherit it)."""
    import os

    root = tmp_path_factory.mktemp("toktts-cache")
    before = os.environ.get("TOKTTS_CACHE")
    os.environ["TOKTTS_CACHE"] = str(root)
    yield root
    if before is None:
        os.environ.pop("TOKTTS_CACHE", None)
    else:
        os.environ["TOKTTS_CACHE"] = before
