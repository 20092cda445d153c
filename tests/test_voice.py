"""The bundled voice: shipped in the package, loaded with no argument, small, and it speaks."""
from pathlib import Path

import numpy as np
import torch

from toktts import TTS
from toktts.inference import bundled_voice_dir


def test_bundled_voice_is_shipped_and_small():
    voice = bundled_voice_dir()
    files = {p.name for p in voice.iterdir()}
    assert {"config.json", "model.safetensors", "codec.safetensors"} <= files
    size = sum(p.stat().st_size for p in voice.iterdir()) / 2**20
    assert size < 15, f"{size:.1f} MiB"  # the aim: int8 weights and an fp16 codec make it ~11


def test_bundled_voice_speaks_and_stops(tmp_path):
    tts = TTS.from_pretrained()  # no argument: the bundled voice
    texts = ["Printing, in the only sense with which we are at present concerned.", "It was a good day."]
    results = tts.synthesize(texts, seed=0)
    for text, out in zip(texts, results):
        seconds = len(out["audio"]) / out["sampling_rate"]
        assert out["stop_reason"] == "eos"
        # flite speaks ~14 characters per second; the voice's length should be in that region
        assert 0.4 * len(text) / 14 < seconds < 2.5 * len(text) / 14, (text, seconds)
        assert np.abs(out["audio"]).max() > 0.01  # not silence


def test_shipping_dtypes_shrink_the_directory_and_load_back_close(tmp_path):
    tts = TTS.from_pretrained()
    reference = {k: v.clone() for k, v in tts.model.state_dict().items()}
    sizes = {}
    for dtype in ("fp32", "bf16", "int8"):
        out = tts.save_pretrained(tmp_path / dtype, dtype=dtype)
        sizes[dtype] = sum(p.stat().st_size for p in Path(out).iterdir())
        loaded = TTS.from_pretrained(out)
        for name, weights in loaded.model.state_dict().items():
            ref = reference[name]
            assert weights.dtype == ref.dtype  # always fp32 in memory
            if dtype == "fp32":
                assert torch.equal(weights, ref), name
            elif dtype == "bf16" or weights.dim() != 2:  # bf16 (all but matrices in int8): 8 bits of mantissa
                assert ((weights - ref).abs() <= ref.abs() / 2**8 + 1e-30).all(), name
            else:  # int8 matrices with per-row scales: error <= half a step
                step = ref.abs().amax(dim=1, keepdim=True) / 127
                assert ((weights - ref).abs() <= step / 2 + 1e-6).all(), name
        assert loaded("Hello.", seed=0)["audio"].size > 0
    assert sizes["int8"] < 0.65 * sizes["bf16"] < 0.65 * sizes["fp32"]
