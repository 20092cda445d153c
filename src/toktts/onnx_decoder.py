"""The decoder step as an ONNX graph run by ONNX Runtime: the same computation as
`Decoder.step` without PyTorch's cost per operator (a batch-1 step is ~60 small operators, and
eager PyTorch spends more time dispatching them than computing them).

    toktts export onnx --model DIR           # writes DIR/decoder_step.onnx
    TTS.from_pretrained(DIR, backend="onnx")  # `auto` (the default on CPU) uses it too

`build` writes the graph node by node from the decoder's weights with ONNX Runtime's fused
transformer operators (inputs and outputs in its docstring). A generation binds its arrays to the
session once (`OnnxDecoder.start`): each step writes its tokens and position into them and ONNX
Runtime writes the logits back, and the keys and values into the past's arrays in place (a past
that went in and came out whole was copied twice a step, which cost a 10 s take more than its
attention did). The embedding is in the graph; sampling and the encoder stay in PyTorch: the same
seed gives the same tokens as the eager path (tested; both compute in fp32, so only a near-tie
between two codes could tell them apart).

A graph belongs to one model: its metadata holds a digest of the decoder's weights and shape, of
the code that builds it and of the torch version, and a graph whose digest does not match is
never used. Without a graph in the model directory, `auto` and `onnx` write one on first use into
$TOKTTS_CACHE/onnx (default ~/.cache/toktts/onnx). Needs `pip install 'toktts[onnx]'`; without
it `auto` runs the eager decoder.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import io
import json
import logging
import math
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
from toktts.model import Attention, Block, Decoder, keep_mask

log = logging.getLogger(__name__)

GRAPH_FILE = "decoder_step.onnx"
GRAPH_VERSION = "4"  # the graph's inputs and outputs; the computation is keyed by its source
DIGEST_KEY = "toktts.decoder_digest"
PRECISION_KEY = "toktts.precision"


def available() -> bool:
    """Whether this install can write and run step graphs: onnx and onnxruntime (`toktts[onnx]`)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def graph_name(precision: str) -> str:
    """The file name of a model directory's step graph in `precision` (fp32 or int8)."""
    return GRAPH_FILE if precision == "fp32" else GRAPH_FILE.replace(".onnx", f"-{precision}.onnx")


def cache_root() -> Path:
    """Where graphs written on first use go: $TOKTTS_CACHE/onnx, else ~/.cache/toktts/onnx."""
    if os.environ.get("TOKTTS_CACHE"):
        return Path(os.environ["TOKTTS_CACHE"]).expanduser() / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "toktts" / "onnx"


def digest(decoder: Decoder) -> str:
    """What a graph is valid for: the decoder's weights and shape (head counts included) and the
    source of the code that writes the graph and of the code it stands for."""
    h = hashlib.sha256(GRAPH_VERSION.encode())
    shape = {"heads": [blk.self_attn.heads for blk in decoder.blocks], "streams": decoder.n_streams,
             "vocab": decoder.vocab_size, "modules": repr(decoder), "input_dropout": decoder.input_dropout}
    h.update(json.dumps(shape, sort_keys=True).encode())
    for code in (_Graph, build, _check, Decoder.embed_tokens, Decoder.positions, Decoder.step_blocks,
                 Decoder.logits, Attention, Block):
        h.update(inspect.getsource(code).encode())
    for name, tensor in sorted(decoder.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def int8_digest(float_digest: str) -> str:
    """What an int8 copy of the graph with `float_digest` is valid for: that graph, quantized by
    this code, this ONNX Runtime and this CPU's choice of weight range."""
    import onnxruntime

    key = [float_digest, inspect.getsource(quantize), onnxruntime.__version__, str(_has_vnni())]
    return hashlib.sha256("\n".join(key).encode()).hexdigest()


class _Graph:
    """An ONNX graph being written: its nodes, and the decoder's weights as initializers."""

    def __init__(self):
        self.nodes: list[Any] = []
        self.weights: list[Any] = []

    def weight(self, name: str, value: torch.Tensor | np.ndarray) -> str:
        from onnx import numpy_helper

        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu().numpy()
        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def linear(self, name: str, x: str, layer: nn.Linear) -> str:
        """x @ W^T without the bias (the node after it adds that: fused into it where it can)."""
        return self.node("MatMul", [x, self.weight(f"{name}.weight", layer.weight.t())], [name])

    def node(self, op: str, inputs: list[str], outputs: list[str], fused: bool = False, **attributes: Any) -> str:
        from onnx import helper

        domain = "com.microsoft" if fused else ""
        self.nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], domain=domain, **attributes))
        return outputs[0]


def _check(decoder: Decoder) -> None:
    """`build` writes the blocks of today's `Block` by hand: a decoder of another make (say, a
    tanh GELU, or cross-attention with its own head count) fails here instead of being spoken
    with the wrong computation (and `auto` runs it eagerly)."""
    heads = decoder.blocks[0].self_attn.heads
    if decoder.window:
        # ONNX Runtime's windowed GroupQueryAttention sees `local_window_size` steps in 1.32 and
        # one more in 1.20: a graph could not say which it means
        raise TokttsError("a decoder with an attention window (model.dec_window) runs in PyTorch, not in the step graph")
    if (decoder.embed.embedding_dim // heads) % 8:
        raise TokttsError(f"the step graph needs heads of a multiple of 8 dimensions "
                          f"(GroupQueryAttention), not {decoder.embed.embedding_dim // heads}")
    for i, blk in enumerate(decoder.blocks):
        kinds = [type(layer) for layer in blk.mlp]
        if (
            blk.cross_attn is None or blk.norm2 is None
            or kinds[:3] != [nn.Linear, nn.GELU, nn.Linear] or blk.mlp[1].approximate != "none"
            or {blk.self_attn.heads, blk.cross_attn.heads} != {heads}
        ):
            raise TokttsError(f"decoder block {i} is not one the step graph knows how to write")


def build(decoder: Decoder) -> Any:
    """The decoder step of `Decoder.step` as an ONNX graph, written node by node from `decoder`'s
    weights with ONNX Runtime's fused transformer operators: each layer is ~11 nodes (the
    self-attention's projections in one matmul, `GroupQueryAttention` over the past, residual and
    layer norm in one `SkipLayerNormalization`, `MultiHeadAttention` over the memory's keys and
    values, `BiasGelu`), where a traced `step_blocks` made ~70 (views, transposes, slices and
    concatenations of the past), which cost a batch-1 step more than its matmuls did. The first
    layer's cross-attention is written out: its weights are an output (the alignment image).

        tokens        (B, N) int64        the step's input ids, one per stream
        position      (1, 1, D)           the step's position embedding, scaled
        keep          (B, 1, D)           the input dropout's mask (`model.input_dropout` only)
        seqlens       (B,) int32          the step's index (every row is at the same step)
        total         () int32            the step's index + 1
        past_k_i      (B, H, S, Dh)       layer i's keys of every step, S the generation's
                                          limit; ONNX Runtime writes the step's own at `seqlens`
                                          (past_v_i its values; present_k_i and present_v_i are
                                          bound to the same arrays)
        cross_k_i     (B, H, L, Dh)       layer i's keys of the memory (and cross_v_i its values)
        text_bias     (B, H, 1, L)        0 on characters, -inf on padding (one row per head: the
                                          shape ONNX Runtime 1.20 takes too; tested with 1.20 and 1.32)
      ->
        logits        (B, N * V)
        attention     (B, H, 1, L)        the first layer's cross-attention weights
    """
    from onnx import TensorProto, helper

    _check(decoder)
    g = _Graph()
    blocks = decoder.blocks
    D, H = decoder.embed.embedding_dim, blocks[0].self_attn.heads
    Dh, Ld, NV = D // H, len(blocks), decoder.n_streams * decoder.vocab_size

    def typed(name: str, kind: int, *shape: int | str):
        return helper.make_tensor_value_info(name, kind, list(shape))

    def tensor(name: str, *shape: int | str):
        return typed(name, TensorProto.FLOAT, *shape)

    N = decoder.n_streams
    inputs = [typed("tokens", TensorProto.INT64, "B", N), tensor("position", 1, 1, D)]
    if decoder.input_dropout > 0:
        inputs.append(tensor("keep", "B", 1, D))
    inputs += [typed("seqlens", TensorProto.INT32, "B"), typed("total", TensorProto.INT32)]
    inputs += [tensor(f"past_{kv}_{i}", "B", H, "S", Dh) for i in range(Ld) for kv in "kv"]
    inputs += [tensor(f"cross_{kv}_{i}", "B", H, "L", Dh) for i in range(Ld) for kv in "kv"]
    inputs += [tensor("text_bias", "B", H, 1, "L")]
    outputs = [tensor("logits", "B", NV), tensor("attention", "B", H, 1, "L")]
    outputs += [tensor(f"present_{kv}_{i}", "B", H, "S", Dh) for i in range(Ld) for kv in "kv"]

    def layer_norm(name: str, x: str, norm: nn.LayerNorm, residual: str | None = None,
                   bias: torch.Tensor | None = None) -> tuple[str, str]:
        """norm(residual + x + bias): (the normed, the sum: the residual stream from here)."""
        weights = [g.weight(f"{name}.weight", norm.weight), g.weight(f"{name}.bias", norm.bias)]
        if residual is None:
            return g.node("LayerNormalization", [x, *weights], [name], axis=-1, epsilon=norm.eps), x
        g.node("SkipLayerNormalization", [x, residual, *weights, g.weight(f"{name}.in_bias", bias)],
               [name, "", "", f"{name}.sum"], fused=True, epsilon=norm.eps)
        return name, f"{name}.sum"

    heads_shape = g.weight("heads_shape", np.array([0, 1, H, Dh], dtype=np.int64))
    width_shape = g.weight("width_shape", np.array([0, 1, D], dtype=np.int64))
    ids = g.node("Add", ["tokens", g.weight("stream_offset", decoder.stream_offset.numpy())], ["ids"])
    x = g.node("Gather", [g.weight("embed", decoder.embed.weight), ids], ["embedded"], axis=0)  # (B, N, D)
    x = g.node("ReduceSum", [x, g.weight("stream_axis", np.array([1], dtype=np.int64))], ["summed"], keepdims=1)
    if decoder.input_dropout > 0:
        x = g.node("Mul", [x, "keep"], ["kept"])
    x = g.node("Add", [x, "position"], ["x"])
    h, x = layer_norm("b0.norm1", "x", blocks[0].norm1)
    for i, blk in enumerate(blocks):
        sa, ca, name = blk.self_attn, blk.cross_attn, f"b{i}"
        qkv = g.weight(f"{name}.qkv.weight", torch.cat([sa.q.weight, sa.kv.weight]).t())  # (D, 3D)
        qkv_bias = g.weight(f"{name}.qkv.bias", torch.cat([sa.q.bias, sa.kv.bias]))
        qkv = g.node("Add", [g.node("MatMul", [h, qkv], [f"{name}.qkv"]), qkv_bias], [f"{name}.qkvb"])
        y = g.node("GroupQueryAttention", [qkv, "", "", f"past_k_{i}", f"past_v_{i}", "seqlens", "total"],
                   [f"{name}.self", f"present_k_{i}", f"present_v_{i}"], fused=True, num_heads=H, kv_num_heads=H)
        h, x = layer_norm(f"{name}.norm2", g.linear(f"{name}.self.out", y, sa.out), blk.norm2, x, sa.out.bias)
        q = g.linear(f"{name}.cross.q", h, ca.q)
        if i == 0:  # written out, for its weights
            q = g.node("Add", [q, g.weight(f"{name}.cross.q.bias", ca.q.bias)], [f"{name}.cross.qb"])
            q = g.node("Reshape", [q, heads_shape], [f"{name}.cross.q_heads"])
            q = g.node("Transpose", [q], [f"{name}.cross.q_bhsd"], perm=[0, 2, 1, 3])  # (B, H, 1, Dh)
            scores = g.node("FusedMatMul", [q, f"cross_k_{i}"], [f"{name}.cross.scores"], fused=True,
                            transB=1, alpha=1 / math.sqrt(Dh))
            scores = g.node("Add", [scores, "text_bias"], [f"{name}.cross.masked"])
            weights = g.node("Softmax", [scores], ["attention"], axis=-1)
            y = g.node("MatMul", [weights, f"cross_v_{i}"], [f"{name}.cross.bhsd"])
            y = g.node("Transpose", [y], [f"{name}.cross.bshd"], perm=[0, 2, 1, 3])
            y = g.node("Reshape", [y, width_shape], [f"{name}.cross"])
        else:  # the keys and values come projected: only the query's bias is added
            bias = g.weight(f"{name}.cross.bias", torch.cat([ca.q.bias, torch.zeros(2 * D)]))
            y = g.node("MultiHeadAttention", [q, f"cross_k_{i}", f"cross_v_{i}", bias, "", "text_bias"],
                       [f"{name}.cross"], fused=True, num_heads=H)
        h, x = layer_norm(f"{name}.norm3", g.linear(f"{name}.cross.out", y, ca.out), blk.norm3, x, ca.out.bias)
        fc1, fc2 = blk.mlp[0], blk.mlp[2]
        y = g.node("BiasGelu", [g.linear(f"{name}.fc1", h, fc1), g.weight(f"{name}.fc1.bias", fc1.bias)],
                   [f"{name}.gelu"], fused=True)
        y = g.linear(f"{name}.fc2", y, fc2)
        if i + 1 < Ld:  # this block's residual and the next one's first norm
            h, x = layer_norm(f"b{i + 1}.norm1", y, blocks[i + 1].norm1, x, fc2.bias)
        else:
            h, _ = layer_norm("norm", y, decoder.norm, x, fc2.bias)
    y = g.node("Add", [g.linear("head", h, decoder.head), g.weight("head.bias", decoder.head.bias)], ["head.sum"])
    g.node("Reshape", [y, g.weight("logits_shape", np.array([0, NV], dtype=np.int64))], ["logits"])
    graph = helper.make_graph(g.nodes, "toktts_decoder_step", inputs, outputs, g.weights)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    # IR version 8 is opset 17's: ONNX Runtimes older than the onnx package can load it too
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def export(decoder: Decoder, path: str | Path, key: str | None = None) -> Path:
    """Write `decoder`'s step graph to `path` (atomically), its digest (`key`, if the caller has
    it already) in the metadata."""
    import onnx

    path = Path(path)
    started = time.monotonic()
    with _failing("export the decoder step"):
        model = build(decoder)
    onnx.helper.set_model_props(model, {DIGEST_KEY: key or digest(decoder), PRECISION_KEY: "fp32"})
    with writing(path, "choose another place (--out)"):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, model.SerializeToString())
    log.info("wrote the decoder step graph %s in %.1f s", path, time.monotonic() - started)
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
                         reduce_range=not _has_vnni(), op_types_to_quantize=["MatMul"],  # the embedding stays fp32
                         # the fused operators' outputs have no inferred type: they are all float
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        model = onnx.load(str(scratch))
    props = {DIGEST_KEY: int8_digest(graph_props(source).get(DIGEST_KEY, "")), PRECISION_KEY: "int8"}
    onnx.helper.set_model_props(model, props)
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
    """The quantizer reports each pass on stdout, the root logger and warnings:
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
    """An ONNX or ONNX Runtime failure as one line (theirs run to pages)."""
    try:
        yield
    except (TokttsError, KeyboardInterrupt):
        raise
    except Exception as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise TokttsError(f"could not {what}: {first[:300]}; --backend torch runs without ONNX Runtime") from None


def graph_props(path: Path) -> dict[str, str]:
    """A graph file's toktts metadata (empty: not one of ours, or damaged), read by ONNX Runtime,
    which runs the graph anyway: importing `onnx` to read it was ~0.6 s of every `say` (its
    ml_dtypes import), an unoptimized session over the file takes ~0.05 s."""
    import onnxruntime as ort

    if not path.is_file():
        return {}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # a damaged file is an answer here, not an error to print
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # a damaged or foreign file: not ours to use
        return {}
    return dict(session.get_modelmeta().custom_metadata_map)


def _matches(path: Path, want: str, precision: str) -> bool:
    props = graph_props(path)
    return props.get(DIGEST_KEY) == want and props.get(PRECISION_KEY, "fp32") == precision


def find_or_export(decoder: Decoder, model_dir: Path | None, precision: str = "fp32") -> Path:
    """The graph for `decoder` in `precision` (fp32 or int8): the model directory's if it is this
    model's, else the cache's, exporting (and quantizing) it there first if need be."""
    _check(decoder)
    want = digest(decoder)
    mine_want = want if precision == "fp32" else int8_digest(want)
    if model_dir is not None and (model_dir / graph_name(precision)).is_file():
        mine = model_dir / graph_name(precision)
        if _matches(mine, mine_want, precision):
            return mine
        log.warning("%s is not this model's %s step graph (other weights or code, or quantized "
                    "elsewhere); not using it", mine, precision)
    cached = cache_root() / f"{want[:32]}.onnx"
    if not _matches(cached, want, "fp32"):
        export(decoder, cached, want)
    if precision == "fp32":
        return cached
    # named by its own digest (ONNX Runtime's version in it): two environments sharing the cache
    # each keep theirs instead of quantizing over the other's
    quantized = cache_root() / f"{mine_want[:32]}-{precision}.onnx"
    if not _matches(quantized, mine_want, precision):
        quantize(cached, quantized)
    return quantized


@dataclass
class OnnxCache:
    """The runner's decoding state for one batch (the counterpart of `DecoderCache`): the arrays
    ONNX Runtime reads and writes, bound to the session once. Each step writes its inputs into
    them in place; the keys and values are written into `past` by the graph itself."""

    binding: Any  # onnxruntime.IOBinding
    feeds: dict[str, np.ndarray]  # tokens, position, seqlens, total (and keep): rewritten each step
    logits: np.ndarray  # (B, N * V), written by each step
    attention: np.ndarray  # (B, H, 1, L)
    positions: np.ndarray  # (S_max, D) each step's position embedding, scaled
    bound: dict[str, np.ndarray]  # every input array the binding reads (kept alive with it), the
    # past's keys and values (B, H, S_max, Dh) among them, which the graph writes in place


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
        self.layers = len(decoder.blocks)

    def start(self, memory: torch.Tensor, text_mask: torch.Tensor, max_steps: int) -> OnnxCache:
        from onnxruntime import OrtValue

        keys, values = self.decoder.memory_keys_values(memory)
        B, H, L, Dh = keys[0].shape
        N, D = self.decoder.n_streams, self.decoder.embed.embedding_dim
        fixed = {"text_bias": torch.zeros(B, H, 1, L).masked_fill(~text_mask.cpu()[:, None, None, :], float("-inf"))}
        for i, (k, v) in enumerate(zip(keys, values)):
            fixed[f"cross_k_{i}"], fixed[f"cross_v_{i}"] = k, v  # (B, H, L, Dh)
        feeds = {"tokens": np.zeros((B, N), dtype=np.int64), "position": np.zeros((1, 1, D), dtype=np.float32),
                 "seqlens": np.zeros(B, dtype=np.int32), "total": np.zeros((), dtype=np.int32)}
        if self.decoder.input_dropout > 0:
            feeds["keep"] = np.ones((B, 1, D), dtype=np.float32)
        # ONNX Runtime reads and writes these arrays' memory: each is bound once, for every step
        bound = {**feeds, **{k: v.float().cpu().contiguous().numpy() for k, v in fixed.items()}}
        bound.update((f"past_{kv}_{i}", np.zeros((B, H, max_steps, Dh), dtype=np.float32))
                     for i in range(self.layers) for kv in "kv")
        positions = self.decoder.pos_scale * self.decoder.positions(0, max_steps, memory.device)
        cache = OnnxCache(self.session.io_binding(), feeds, np.zeros((B, N * self.decoder.vocab_size), np.float32),
                          np.zeros((B, H, 1, L), np.float32), positions.float().cpu().numpy(), bound)
        for name, array in bound.items():
            cache.binding.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(array))
        outputs = {"logits": cache.logits, "attention": cache.attention}
        outputs.update((f"present_{kv}_{i}", bound[f"past_{kv}_{i}"]) for i in range(self.layers) for kv in "kv")
        for name, array in outputs.items():  # the present keys and values are the past's arrays
            cache.binding.bind_ortvalue_output(name, OrtValue.ortvalue_from_numpy(array))
        return cache

    def step(
        self, tokens: torch.Tensor, cache: OnnxCache, pos: int, need_weights: bool = False, generator=None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feeds, decoder = cache.feeds, self.decoder
        feeds["tokens"][...] = tokens[:, :, 0].cpu().numpy()
        feeds["position"][0, 0] = cache.positions[pos]
        feeds["seqlens"][...] = pos
        feeds["total"][...] = pos + 1
        if decoder.input_dropout > 0:
            feeds["keep"][...] = keep_mask(feeds["keep"].shape, decoder.input_dropout, tokens.device, generator)
        with _failing("run the decoder step"):
            self.session.run_with_iobinding(cache.binding)
        B = cache.logits.shape[0]
        out = torch.from_numpy(cache.logits).to(tokens.device)  # a view: the next step writes over it
        weights = [torch.from_numpy(cache.attention.copy()).to(tokens.device)] if need_weights else []
        return out.view(B, 1, self.decoder.n_streams, self.decoder.vocab_size), weights
