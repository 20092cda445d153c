"""The decoder step as an ONNX graph run by ONNX Runtime: the same computation as
`Decoder.step` without PyTorch's cost per operator (a batch-1 step is ~60 small operators, and
eager PyTorch spends more time dispatching them than computing them).

    toktts export onnx --model DIR           # writes DIR/decoder_step.onnx
    TTS.from_pretrained(DIR, backend="onnx")  # `auto` (the default on CPU) uses it too

The graph (`StepGraph`) takes
    x          (B, 1, D)             the step's input, embedded by PyTorch (positions and input
                                     dropout drawn from the same generators as the eager path)
    past       (P, Ld, 2, B, H, Dh)  the keys and values of the P earlier steps, every layer
    cross_k/v  (Ld, B, H, L, Dh)     the memory's, computed once per text
    text_mask  (B, 1, 1, L)          bool
and gives logits (B, N * V), present (Ld, 2, B, H, Dh), this step's keys and values, and
attention (B, H, 1, L), the first layer's cross-attention (the evaluation's alignment image). The
runner keeps the past in one preallocated array (S_max, Ld, 2, B, H, Dh) whose first P rows are
one contiguous block, so feeding it copies nothing. Sampling stays in PyTorch: the same seed gives
the same tokens as the eager path (tested).

A graph belongs to one model's weights: its metadata holds their digest, and a graph whose digest
does not match is never used. Without an exported graph in the model directory, `auto` and
`onnx` export one on first use into $TOKTTS_CACHE/onnx (default ~/.cache/toktts/onnx).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from toktts.errors import TokttsError
from toktts.files import writing
from toktts.model import Decoder

log = logging.getLogger(__name__)

GRAPH_FILE = "decoder_step.onnx"
GRAPH_VERSION = "2"  # bump when StepGraph's inputs, outputs or computation change
DIGEST_KEY = "toktts.decoder_digest"
OPTIMIZE = True


def available() -> bool:
    """Whether ONNX Runtime and the exporter's packages are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "onnxscript"))


def graph_name(precision: str) -> str:
    """The file name of a model directory's step graph in `precision` (fp32 or int8)."""
    return GRAPH_FILE if precision == "fp32" else GRAPH_FILE.replace(".onnx", f"-{precision}.onnx")


def cache_root() -> Path:
    """Where graphs exported on first use go: $TOKTTS_CACHE/onnx, else ~/.cache/toktts/onnx."""
    if os.environ.get("TOKTTS_CACHE"):
        return Path(os.environ["TOKTTS_CACHE"]).expanduser() / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "toktts" / "onnx"


def digest(decoder: Decoder) -> str:
    """What a graph is valid for: the decoder's weights, its shape and the graph's version."""
    h = hashlib.sha256(GRAPH_VERSION.encode())
    for name, tensor in sorted(decoder.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(str(float(decoder.input_dropout)).encode())
    return h.hexdigest()


class StepGraph(nn.Module):
    """What is exported: `Decoder.step_blocks` and the logits, over the past as one array."""

    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder

    def forward(
        self, x: torch.Tensor, past: torch.Tensor, cross_k: torch.Tensor, cross_v: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        present = []

        def remember(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            present.append(torch.stack([k[:, :, 0], v[:, :, 0]]))  # (2, B, H, Dh)
            earlier = past[:, i].permute(1, 2, 3, 0, 4)  # (2, B, H, P, Dh)
            return torch.cat([earlier[0], k], 2), torch.cat([earlier[1], v], 2)

        x, weights = self.decoder.step_blocks(x, remember, cross_k, cross_v, text_mask, need_weights=True)
        logits = self.decoder.logits(x)  # (B, 1, N, V)
        return logits.reshape(x.shape[0], -1), torch.stack(present), weights[0]


def export(decoder: Decoder, path: str | Path) -> Path:
    """Write `decoder`'s step graph to `path` (atomically), its weights' digest in the metadata."""
    import onnx

    path = Path(path)
    graph = StepGraph(decoder).eval()
    block = decoder.blocks[0].self_attn
    B, L, P, D = 2, 7, 3, decoder.embed.embedding_dim
    H, Ld = block.heads, len(decoder.blocks)
    Dh = D // H
    example = (
        torch.zeros(B, 1, D), torch.zeros(P, Ld, 2, B, H, Dh), torch.zeros(Ld, B, H, L, Dh),
        torch.zeros(Ld, B, H, L, Dh), torch.ones(B, 1, 1, L, dtype=torch.bool),
    )
    batch, steps, chars = (torch.export.Dim(n, max=1 << 16) for n in ("batch", "past", "chars"))
    shapes = {
        "x": {0: batch}, "past": {0: steps, 3: batch}, "cross_k": {1: batch, 3: chars},
        "cross_v": {1: batch, 3: chars}, "text_mask": {0: batch, 3: chars},
    }
    started = time.monotonic()
    with torch.inference_mode(False), torch.no_grad(), _quiet():
        program = torch.onnx.export(
            graph, example, input_names=list(shapes), output_names=["logits", "present", "attention"],
            dynamic_shapes=shapes, dynamo=True, optimize=OPTIMIZE, verbose=False,
        )
    model = program.model_proto
    onnx.helper.set_model_props(model, {DIGEST_KEY: digest(decoder)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, "choose another place (--out)"):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.write(model.SerializeToString())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    log.info("exported the decoder step to %s in %.1f s", path, time.monotonic() - started)
    return path


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter and the quantizer report each pass on stdout, the root logger and warnings:
    none of it is for a user (and stdout may be carrying audio: `say --stream`)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def graph_digest(path: Path) -> str | None:
    """The digest of the weights a graph file was exported from (None: not one of ours, or damaged)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception:  # a damaged or foreign file: not ours to use
        return None
    return next((p.value for p in model.metadata_props if p.key == DIGEST_KEY), None)


def quantize(source: Path, path: Path) -> Path:
    """An int8 copy of a step graph (ONNX Runtime's dynamic quantization: weights per output
    channel, activations per call). A batch-1 step reads every weight once; int8 reads 4x fewer
    bytes (19 -> 5 MB for the bundled voice's decoder)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, "choose another place (--out)"):
        try:
            with _quiet():
                quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
            model = onnx.load(str(tmp))
            onnx.helper.set_model_props(model, {DIGEST_KEY: graph_digest(source) or "", "toktts.precision": "int8"})
            onnx.save(model, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def find_or_export(decoder: Decoder, model_dir: Path | None, precision: str = "fp32") -> Path:
    """The graph for `decoder` in `precision` (fp32 or int8): the model directory's if it matches
    the weights, else the cache's, exporting it there first if need be."""
    want = digest(decoder)
    name = graph_name(precision)
    if model_dir is not None and (model_dir / name).is_file():
        if graph_digest(model_dir / name) == want:
            return model_dir / name
        log.warning("%s was exported from other weights; not using it", model_dir / name)
    cached = cache_root() / f"{want[:32]}.onnx"
    if not (cached.is_file() and graph_digest(cached) == want):
        log.info("exporting the decoder step for ONNX Runtime (once per model) ...")
        export(decoder, cached)
    if precision == "fp32":
        return cached
    quantized = cached.with_name(f"{want[:32]}-{precision}.onnx")
    if not (quantized.is_file() and graph_digest(quantized) == want):
        quantize(cached, quantized)
    return quantized


@dataclass
class OnnxCache:
    """The runner's decoding state for one batch (the counterpart of `DecoderCache`)."""

    past: np.ndarray  # (S_max, Ld, 2, B, H, Dh)
    cross_k: np.ndarray  # (Ld, B, H, L, Dh)
    cross_v: np.ndarray
    text_mask: np.ndarray  # (B, 1, 1, L) bool


class OnnxDecoder:
    """Stands in for `Decoder` in `TokTTS.generate_steps`: `start` and `step` as the eager
    decoder's, the blocks run by ONNX Runtime on `threads` threads."""

    def __init__(self, decoder: Decoder, path: Path, threads: int | None = 1):
        import onnxruntime as ort

        self.decoder, self.path = decoder, path
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's choice
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise TokttsError(f"ONNX Runtime could not load {str(path)!r} ({e}); delete it to export it again") from None

    def start(self, memory: torch.Tensor, text_mask: torch.Tensor, max_steps: int) -> OnnxCache:
        keys, values = [], []
        for blk in self.decoder.blocks:
            k, v = blk.cross_attn.keys_values(memory)
            keys.append(k)
            values.append(v)
        cross_k = torch.stack(keys).float().cpu().numpy()  # (Ld, B, H, L, Dh)
        Ld, B, H, _, Dh = cross_k.shape
        return OnnxCache(
            past=np.zeros((max_steps, Ld, 2, B, H, Dh), dtype=np.float32),
            cross_k=cross_k,
            cross_v=torch.stack(values).float().cpu().numpy(),
            text_mask=text_mask[:, None, None, :].cpu().numpy(),
        )

    def step(
        self, tokens: torch.Tensor, cache: OnnxCache, pos: int, need_weights: bool = False, generator=None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.decoder.embed_tokens(tokens, offset=pos, generator=generator)
        logits, present, attention = self.session.run(None, {
            "x": x.float().cpu().numpy(), "past": cache.past[:pos], "cross_k": cache.cross_k,
            "cross_v": cache.cross_v, "text_mask": cache.text_mask,
        })
        cache.past[pos] = present
        B = logits.shape[0]
        out = torch.from_numpy(logits).to(tokens.device)
        weights = [torch.from_numpy(attention).to(tokens.device)] if need_weights else []
        return out.view(B, 1, self.decoder.n_streams, self.decoder.vocab_size), weights
