"""`TTS`: the one inference facade, used by the CLI, the server, the evaluation and the tests.

    from toktts import TTS
    tts = TTS.from_pretrained("runs/demo")          # or no argument: the bundled voice
    out = tts("Hello there.", temperature=0.7, seed=0)
    out["audio"], out["sampling_rate"], out["stop_reason"]   # float32 mono, int, "eos"|"max_length"
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from toktts.checkpoint import load_model_dir, save_model_dir
from toktts.codecs import Codec
from toktts.config import Config
from toktts.errors import TokttsError
from toktts.model import TokTTS
from toktts.text import VOCAB, normalize

log = logging.getLogger(__name__)

BUNDLED_VOICE = "demo"


def bundled_voice_dir() -> Path:
    return Path(str(resources.files("toktts") / "voices" / BUNDLED_VOICE))


def resolve_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run torch on `n` intra-op threads inside the block (None: leave it as it is)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def autocast(device: torch.device, precision: str):
    """bf16 autocast is the fast path on AMX CPUs and on GPUs; fp32 runs without it."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" and device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


class TTS:
    """A trained toktts model with its codec and text settings."""

    def __init__(
        self, model: TokTTS, cfg: Config, codec: Codec, device: torch.device, precision: str | None = None
    ):
        self.model, self.cfg, self.codec, self.device = model, cfg, codec, device
        # Decoding multiplies one row at a time; oneDNN's bf16 path for such small matmuls is
        # far slower than fp32 on CPU (measured ~50 us fp32 vs ~10 ms bf16 for a 1x256x1024
        # linear), while GPUs gain from bf16.
        self.precision = precision or ("bf16" if device.type == "cuda" else "fp32")
        # A decoder step is ~40 small ops; each parallel op on 2 threads waits for the second
        # core, and when anything else runs on the machine a step went from 3.5 ms to 150 ms
        # (benchmarks/RESULTS.md). One thread is the fast and predictable choice on CPU.
        self.generate_threads: int | None = 1 if device.type == "cpu" else None
        self.sampling_rate = codec.sample_rate

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: str | None = None, precision: str | None = None
    ) -> "TTS":
        """Load a model directory, a Hub repo id (`user/name`), or the bundled voice (no path)."""
        if path is None:
            path = bundled_voice_dir()
            if not (path / "config.json").is_file():
                raise TokttsError("this install has no bundled voice; pass a model directory (--model DIR)")
        path = Path(path)
        if not path.exists() and len(path.parts) == 2 and not str(path).startswith((".", "/")):
            path = _download_from_hub(str(path))
        dev = resolve_device(device)
        model, cfg, codec = load_model_dir(path, dev)
        return cls(model, cfg, codec, dev, precision)

    def save_pretrained(self, directory: str | Path, dtype: str = "fp32") -> Path:
        """Write the model directory; dtype "bf16" halves the weights (e.g. for shipping a voice)."""
        dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
        if dtype not in dtypes:
            raise TokttsError(f"dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
        return save_model_dir(directory, self.model, self.cfg, self.codec, dtype=dtypes[dtype])

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None) -> str:
        """Upload the model directory to the Hugging Face Hub; returns the repo URL."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=tmp, repo_id=repo_id)
        return f"https://huggingface.co/{repo_id}"

    # -- text -------------------------------------------------------------------------------

    def prepare_text(self, text: str) -> str:
        if not isinstance(text, str):
            raise TokttsError(f"text must be a string, got {type(text).__name__}")
        spoken = normalize(text) if self.cfg.data.normalize else text
        if not spoken.strip() or not VOCAB.encode(spoken):
            shown = text if len(text) < 40 else text[:37] + "..."
            raise TokttsError(f"nothing to say in {shown!r}: the text is empty after normalisation; give words")
        return spoken

    def max_steps(self, text: str, max_seconds: float | None = None) -> int:
        """The decoder-step limit for a text: 1 s + seconds_per_char per character, capped."""
        g = self.cfg.generate
        cap = g.max_seconds if max_seconds is None else max_seconds
        seconds = min(1.0 + g.seconds_per_char * len(text), cap)
        frames = max(1, int(seconds * self.codec.frame_rate))
        layout = self.model.layout
        return layout.n_steps(frames) - layout.tail

    # -- synthesis --------------------------------------------------------------------------

    def __call__(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """Synthesize one text. Keyword arguments: temperature, top_k, top_p, seed, max_seconds."""
        return self.synthesize([text], **kwargs)[0]

    def generate_tokens(
        self,
        texts: list[str],
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_seconds: float | None = None,
        need_weights: bool = False,
    ) -> tuple[list[str], dict]:
        """Normalise and batch the texts and sample their codec tokens (no audio decoding)."""
        g = replace(
            self.cfg.generate,
            **{k: v for k, v in dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed).items()
               if v is not None},
        )
        _check_sampling(g.temperature, g.top_k, g.top_p)
        spoken = [self.prepare_text(t) for t in texts]
        ids = [VOCAB.encode(s) for s in spoken]
        text = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
        for b, row in enumerate(ids):
            text[b, : len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in ids])
        limits = torch.tensor([self.max_steps(s, max_seconds) for s in spoken])
        generator = None
        if g.seed is not None:
            generator = torch.Generator(self.device).manual_seed(int(g.seed))
        with autocast(self.device, self.precision), num_threads(self.generate_threads):
            out = self.model.generate(
                text.to(self.device), lengths.to(self.device), limits.to(self.device),
                temperature=g.temperature, top_k=g.top_k, top_p=g.top_p, generator=generator,
                need_weights=need_weights,
            )
        return spoken, out

    def decode(self, tokens: torch.Tensor, frames: torch.Tensor) -> list[np.ndarray]:
        """(B, N, S) tokens and (B,) frame counts -> one waveform per item."""
        layout = self.model.layout
        codes = layout.codes(tokens)  # (B, K, T)
        T = max(int(frames.max()), 1)
        codes = codes[:, :, :T]
        with torch.inference_mode():
            audio = self.codec.decode(codes).float().cpu().numpy()
        hop = self.codec.sample_rate // self.codec.frame_rate
        return [audio[b, : int(frames[b]) * hop] for b in range(len(audio))]

    def synthesize(self, texts: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        """Synthesize a batch of texts; one result dict per text."""
        if isinstance(texts, str):
            texts = [texts]
        spoken, out = self.generate_tokens(texts, **kwargs)
        audio = self.decode(out["tokens"], out["frames"])
        results = []
        for b, wav in enumerate(audio):
            stop = "eos" if bool(out["stopped"][b]) else "max_length"
            if stop == "max_length":
                log.warning("generation hit its length limit without ending: %r", spoken[b][:60])
            results.append({
                "audio": wav.astype(np.float32),
                "sampling_rate": self.sampling_rate,
                "stop_reason": stop,
                "text": spoken[b],
                "frames": int(out["frames"][b]),
            })
        return results


def _check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    if temperature < 0:
        raise TokttsError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise TokttsError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0 < top_p <= 1:
        raise TokttsError(f"top_p must be in (0, 1], got {top_p}")


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as e:
        raise TokttsError(
            f"model {repo_id!r} is neither a local directory nor downloadable from the Hub ({type(e).__name__}); "
            "pass an existing model directory"
        ) from None


def text_to_speech_pipeline(model_path: str | Path | None = None, device: str | None = None):
    """The seed project's entry point: `pipe(text, forward_params={...})` -> {"audio", "sampling_rate"}.
    forward_params takes temperature, top_k, top_p, seed, max_seconds and do_sample (False = greedy)."""
    tts = TTS.from_pretrained(model_path, device=device)
    allowed = {"temperature", "top_k", "top_p", "seed", "max_seconds", "do_sample"}

    def pipe(text: str, forward_params: dict | None = None) -> dict[str, Any]:
        params = dict(forward_params or {})
        unknown = set(params) - allowed
        if unknown:
            raise TokttsError(f"unknown forward_params {sorted(unknown)}; use {sorted(allowed)}")
        if params.pop("do_sample", True) is False:
            params["temperature"] = 0.0
        return tts(text, **params)

    pipe.tts = tts
    return pipe
