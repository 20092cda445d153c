"""The decoder step as an ONNX graph run by ONNX Runtime: the same computation as
`Decoder.step` without PyTorch's cost per operator (a batch-1 step is ~60 small operators, and
eager PyTorch spends more time dispatching them than computing them).

    toktts export onnx --model DIR           # writes DIR/decoder_step.onnx
    TTS.from_pretrained(DIR, backend="onnx")  # `auto` (the default on CPU) uses it too

The graph (`StepGraph`) takes
    x          (B, 1, D)             the step's input, embedded by PyTorch (positions and input
                                     dropout drawn from the same generators as the eager path)
    past       (P, Ld, 2, B, H, Dh)  the keys and values of the P earlier steps it sees, every
                                     layer (all of them, or the last `model.dec_window` - 1)
    cross_k/v  (Ld, B, H, L, Dh)     the memory's, computed once per text
    text_mask  (B, 1, 1, L)          bool
and gives logits (B, N * V), present (Ld, 2, B, H, Dh), this step's keys and values, and
attention (B, H, 1, L), the first layer's cross-attention (the evaluation's alignment image). The
runner keeps the past in one preallocated array (S_max, Ld, 2, B, H, Dh) whose rows are one
contiguous block, so feeding any run of them copies nothing (inside the graph each layer still gathers its
past: memory traffic grows with the step, as the eager path's attention does). Sampling stays in
PyTorch: the same seed gives the same tokens as the eager path (tested; both compute in fp32, so
only a near-tie between two codes could tell them apart).

A graph belongs to one model: its metadata holds a digest of the decoder's weights and shape, of
the code traced into it and of the torch version, and a graph whose digest does not match is never
used. Without a graph in the model directory, `auto` and `onnx` export one on first use into
$TOKTTS_CACHE/onnx (default ~/.cache/toktts/onnx). Needs `pip install 'toktts[onnx]'` and
torch >= 2.6; without them `auto` runs the eager decoder.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import io
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from toktts.errors import TokttsError
from toktts.files import write_atomic, writing
from toktts.model import Attention, Block, Decoder

log = logging.getLogger(__name__)

GRAPH_FILE = "decoder_step.onnx"
GRAPH_VERSION = "2"  # the graph's inputs and outputs; the computation is keyed by its source
DIGEST_KEY = "toktts.decoder_digest"
PRECISION_KEY = "toktts.precision"
MIN_TORCH = (2, 6)  # torch.onnx.export(dynamo=True, dynamic_shapes=..., optimize=...)


def available() -> bool:
    """Whether this install can export and run step graphs: onnx, onnxruntime and onnxscript
    (`toktts[onnx]`) and a recent enough torch."""
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    return version >= MIN_TORCH and all(
        importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "onnxscript")
    )


def graph_name(precision: str) -> str:
    """The file name of a model directory's step graph in `precision` (fp32 or int8)."""
    return GRAPH_FILE if precision == "fp32" else GRAPH_FILE.replace(".onnx", f"-{precision}.onnx")


def cache_root() -> Path:
    """Where graphs exported on first use go: $TOKTTS_CACHE/onnx, else ~/.cache/toktts/onnx."""
    if os.environ.get("TOKTTS_CACHE"):
        return Path(os.environ["TOKTTS_CACHE"]).expanduser() / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "toktts" / "onnx"


def digest(decoder: Decoder) -> str:
    """What a graph is valid for: the decoder's weights and shape (head counts included), the
    source of the code traced into the graph, and the torch version that traced it."""
    h = hashlib.sha256(GRAPH_VERSION.encode())
    shape = {"heads": [blk.self_attn.heads for blk in decoder.blocks], "streams": decoder.n_streams,
             "vocab": decoder.vocab_size, "torch": torch.__version__}
    h.update(json.dumps(shape, sort_keys=True).encode())
    for code in (StepGraph, Decoder.step_blocks, Decoder.logits, Attention, Block):
        h.update(inspect.getsource(code).encode())
    for name, tensor in sorted(decoder.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class StepGraph(nn.Module):
    """What is exported: `Decoder.step_blocks` and the logits, over the past as one array."""

    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder

    def forward(
        self, x: torch.Tensor, past: torch.Tensor, cross_k: torch.Tensor, cross_v: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        present = []

        def remember(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            present.append(torch.stack([k[:, :, 0], v[:, :, 0]]))  # (2, B, H, Dh)
            earlier = past[:, i].permute(1, 2, 3, 0, 4)  # (2, B, H, P, Dh)
            return torch.cat([earlier[0], k], 2), torch.cat([earlier[1], v], 2)

        x, weights = self.decoder.step_blocks(x, remember, cross_k, cross_v, text_mask, need_weights=True)
        logits = self.decoder.logits(x)  # (B, 1, N, V)
        return logits.reshape(x.shape[0], -1), torch.stack(present), weights[0]


def export(decoder: Decoder, path: str | Path) -> Path:
    """Write `decoder`'s step graph to `path` (atomically), its digest in the metadata."""
    import onnx

    path = Path(path)
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
    started, training = time.monotonic(), decoder.training
    try:
        with torch.inference_mode(False), torch.no_grad(), _quiet(), _failing("export the decoder step"):
            program = torch.onnx.export(
                StepGraph(decoder).eval(), example, input_names=list(shapes),
                output_names=["logits", "present", "attention"], dynamic_shapes=shapes, dynamo=True,
                optimize=True, verbose=False,
            )
    finally:
        decoder.train(training)
    model = program.model_proto
    onnx.helper.set_model_props(model, {DIGEST_KEY: digest(decoder), PRECISION_KEY: "fp32"})
    with writing(path, "choose another place (--out)"):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, model.SerializeToString())
    log.info("exported the decoder step to %s in %.1f s", path, time.monotonic() - started)
    return path


def quantize(source: Path, path: Path) -> Path:
    """An int8 copy of a step graph (ONNX Runtime's dynamic quantization: weights per output
    channel, activations per call). A batch-1 step reads every weight once; int8 reads 4x fewer
    bytes (19 -> 5 MB for the bundled voice's decoder). On CPUs without VNNI the weights keep 7
    bits, as ONNX Runtime advises: their int8 kernels can saturate on full-range weights."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, _quiet(), _failing("quantize the decoder step"):
        scratch = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(source), str(scratch), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=not _has_vnni())
        model = onnx.load(str(scratch))
    onnx.helper.set_model_props(model, {DIGEST_KEY: graph_props(source).get(DIGEST_KEY, ""), PRECISION_KEY: "int8"})
    with writing(path, "choose another place (--out)"):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, model.SerializeToString())
    return path


def _has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter and the quantizer report each pass on stdout, the root logger and warnings:
    none of it is for a user (and stdout may be carrying audio: `say --stream`)."""
    before = logging.root.manager.disable
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(max(before, logging.WARNING))
        try:
            yield
        finally:
            logging.disable(before)


@contextlib.contextmanager
def _failing(what: str) -> Iterator[None]:
    """An exporter or ONNX Runtime failure as one line (theirs run to pages)."""
    try:
        yield
    except (TokttsError, KeyboardInterrupt):
        raise
    except Exception as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise TokttsError(f"could not {what}: {first[:300]}; --backend torch runs without ONNX Runtime") from None


def graph_props(path: Path) -> dict[str, str]:
    """A graph file's toktts metadata (empty: not one of ours, or damaged)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception:  # a damaged or foreign file: not ours to use
        return {}
    return {p.key: p.value for p in model.metadata_props}


def _matches(path: Path, want: str, precision: str) -> bool:
    props = graph_props(path)
    return props.get(DIGEST_KEY) == want and props.get(PRECISION_KEY, "fp32") == precision


def find_or_export(decoder: Decoder, model_dir: Path | None, precision: str = "fp32") -> Path:
    """The graph for `decoder` in `precision` (fp32 or int8): the model directory's if it is this
    model's, else the cache's, exporting (and quantizing) it there first if need be."""
    want = digest(decoder)
    if model_dir is not None and (model_dir / graph_name(precision)).is_file():
        mine = model_dir / graph_name(precision)
        if _matches(mine, want, precision):
            return mine
        log.warning("%s is not this model's %s step graph (other weights, code or torch version); "
                    "not using it", mine, precision)
    cached = cache_root() / f"{want[:32]}.onnx"
    if not _matches(cached, want, "fp32"):
        log.info("exporting the decoder step for ONNX Runtime (once per model) ...")
        export(decoder, cached)
    if precision == "fp32":
        return cached
    quantized = cache_root() / f"{want[:32]}-{precision}.onnx"
    if not _matches(quantized, want, precision):
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
    decoder's, the blocks run by ONNX Runtime on `threads` threads (fixed when it is made)."""

    def __init__(self, decoder: Decoder, path: Path, threads: int | None = 1):
        import onnxruntime as ort

        self.decoder, self.path = decoder, path
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's choice
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        # Threads that spin between steps take the core from whatever else runs (the sampling,
        # the codec, another request): they sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        with _failing(f"load {str(path)!r} (delete it to export it again)"):
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def start(self, memory: torch.Tensor, text_mask: torch.Tensor, max_steps: int) -> OnnxCache:
        keys, values = self.decoder.memory_keys_values(memory)
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
        feeds: dict[str, Any] = {
            "x": x.float().cpu().numpy(), "past": cache.past[self.decoder.first_visible(pos) : pos],
            "cross_k": cache.cross_k,
            "cross_v": cache.cross_v, "text_mask": cache.text_mask,
        }
        with _failing("run the decoder step"):
            logits, present, attention = self.session.run(None, feeds)
        cache.past[pos] = present
        B = logits.shape[0]
        out = torch.from_numpy(logits).to(tokens.device)
        weights = [torch.from_numpy(attention).to(tokens.device)] if need_weights else []
        return out.view(B, 1, self.decoder.n_streams, self.decoder.vocab_size), weights
