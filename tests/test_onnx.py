"""The decoder step run by ONNX Runtime (toktts.onnx_decoder): the same tokens as the eager
decoder for the same seed, in every way a batch is made; graphs found, exported once, never used
for other weights; `toktts export onnx`; the backend's errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toktts.errors import TokttsError
from toktts.inference import TTS

pytest.importorskip("onnxruntime", reason="toktts[onnx] is not installed")
from toktts import onnx_decoder  # noqa: E402

from helpers import assert_one_error_line, tiny_tts, toktts, toktts_here

TEXTS = ["Hello there.", "A somewhat longer sentence, with a comma in it."]


def twins(**model) -> tuple[TTS, TTS]:
    """The same tiny model behind both backends, with three decoder layers: the graph writes the
    first layer's cross-attention out (its weights are an output) and fuses the others', and
    joins each layer's residual to the next one's norm."""
    eager = tiny_tts(max_seconds=1.5, dec_layers=3)
    for key, value in model.items():
        setattr(eager.model.decoder, key, value)
    fast = TTS(eager.model, eager.cfg, eager.codec, eager.device, backend="onnx")
    eager = TTS(eager.model, eager.cfg, eager.codec, eager.device, backend="torch")
    return eager, fast


@pytest.mark.parametrize("options,model", [
    (dict(seed=0), {}),
    (dict(seed=1, cfg_scale=2.0), {}),
    (dict(seed=[3, 4], cfg_scale=1.5, top_p=0.9), {}),  # one generator per item
    (dict(temperature=0, cfg_scale=1.0), {}),  # greedy
])
def test_same_tokens_as_the_eager_decoder(options, model):
    eager, fast = twins(**model)
    assert (eager.backend, fast.backend) == ("torch", "onnx")
    for texts in (TEXTS[:1], TEXTS):  # batch 1 and 2
        seeds = options.get("seed")
        opts = dict(options, seed=seeds[: len(texts)] if isinstance(seeds, list) else seeds)
        _, a = eager.generate_tokens(texts, **opts)
        _, b = fast.generate_tokens(texts, **opts)
        assert a["tokens"].shape[2] > 5
        assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["frames"], b["frames"])


def test_large_batches_run_eagerly_with_the_same_tokens():
    """Past ONNX_MAX_ROWS rows the graph is no faster than the eager step (benchmarks/RESULTS.md)."""
    from toktts.inference import ONNX_MAX_ROWS

    eager, fast = twins()
    texts = [f"Sentence number {i}." for i in range(ONNX_MAX_ROWS)]  # guided: twice the rows
    _, a = eager.generate_tokens(texts, seed=list(range(len(texts))))
    _, b = fast.generate_tokens(texts, seed=list(range(len(texts))))
    assert torch.equal(a["tokens"], b["tokens"]) and fast._onnx is None  # no graph was needed


def test_input_dropout_draws_its_masks_from_the_same_generators():
    eager, fast = twins(input_dropout=0.3)
    _, a = eager.generate_tokens(TEXTS, seed=[5, 6])
    _, b = fast.generate_tokens(TEXTS, seed=[5, 6])
    assert torch.equal(a["tokens"], b["tokens"])


def test_streaming_and_whole_takes_agree_and_the_graph_gives_the_alignment():
    eager, fast = twins()
    # No retries: the tiny model runs away, and a whole take keeps the best of its retries where a
    # stream has already given out its first take.
    whole = fast("Hello there, how are you?", seed=2, retries=0)["audio"]
    streamed = np.concatenate(list(fast.stream("Hello there, how are you?", seed=2, retries=0)))
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    np.testing.assert_allclose(eager("Hello there, how are you?", seed=2, retries=0)["audio"], whole, atol=1e-5)
    _, a = eager.generate_tokens(TEXTS, seed=0, need_weights=True)  # the evaluation's alignment image
    _, b = fast.generate_tokens(TEXTS, seed=0, need_weights=True)
    assert torch.equal(a["tokens"], b["tokens"])
    torch.testing.assert_close(a["attention"], b["attention"], atol=1e-5, rtol=1e-4)


def test_a_graph_is_exported_once_and_never_used_for_other_weights(tmp_path, onnx_cache, caplog):
    eager, fast = twins()
    model_dir = tmp_path / "model"
    fast.save_pretrained(model_dir)
    loaded = TTS.from_pretrained(model_dir, backend="onnx")
    loaded.generate_tokens(TEXTS[:1], seed=0)
    cached = onnx_cache / "onnx" / (onnx_decoder.digest(loaded.model.decoder)[:32] + ".onnx")
    assert loaded._onnx.path == cached and cached.is_file()
    mtime = cached.stat().st_mtime_ns
    again = TTS.from_pretrained(model_dir, backend="onnx")
    again.generate_tokens(TEXTS[:1], seed=0)
    assert again._onnx.path == cached and cached.stat().st_mtime_ns == mtime  # not exported again

    # A graph in the model directory is used when it is this model's ...
    (model_dir / onnx_decoder.GRAPH_FILE).write_bytes(cached.read_bytes())
    mine = TTS.from_pretrained(model_dir, backend="onnx")
    mine.generate_tokens(TEXTS[:1], seed=0)
    assert mine._onnx.path == model_dir / onnx_decoder.GRAPH_FILE
    # ... and never when the weights changed (or the file is not a graph at all)
    other = tiny_tts(seed=1)
    other.save_pretrained(model_dir)
    for content in (cached.read_bytes(), b"not a graph"):
        (model_dir / onnx_decoder.GRAPH_FILE).write_bytes(content)
        changed = TTS.from_pretrained(model_dir, backend="onnx")
        _, a = changed.generate_tokens(TEXTS, seed=0)
        assert changed._onnx.path.parent == onnx_cache / "onnx"
        _, b = TTS.from_pretrained(model_dir, backend="torch").generate_tokens(TEXTS, seed=0)
        assert torch.equal(a["tokens"], b["tokens"])
    assert "is not this model's fp32 step graph" in caplog.text


@pytest.mark.parametrize("change", ["optimizer step", "load_state_dict"])
def test_weights_changed_in_place_are_the_ones_spoken(change, onnx_cache):
    """The ONNX graph and the int8 copy are made from the weights a TTS had; after its model's
    weights change in place they are made again. Training's fused AdamW writes them without
    bumping the tensors' version counters, so it is one of the two changes tried."""
    from toktts.config import TrainConfig
    from toktts.train import make_optimizer

    eager, fast = twins()
    int8 = TTS(eager.model, eager.cfg, eager.codec, eager.device, precision="int8", backend="torch")
    before, before8 = (tts.generate_tokens(TEXTS[:1], seed=0)[1]["tokens"] for tts in (fast, int8))
    generator = torch.Generator().manual_seed(0)
    if change == "optimizer step":
        optimizer = make_optimizer(eager.model, TrainConfig(lr=0.05))
        for p in eager.model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    else:
        state = {k: v + torch.randn(v.shape, generator=generator) * (v.abs().mean() + 0.01) if v.is_floating_point() else v
                 for k, v in eager.model.state_dict().items()}
        eager.model.load_state_dict(state)
    after, after8 = (tts.generate_tokens(TEXTS[:1], seed=0)[1]["tokens"] for tts in (fast, int8))
    assert not torch.equal(before, after) and not torch.equal(before8, after8)
    assert torch.equal(after, eager.generate_tokens(TEXTS[:1], seed=0)[1]["tokens"])
    fresh8 = TTS(eager.model, eager.cfg, eager.codec, eager.device, precision="int8", backend="torch")
    assert torch.equal(after8, fresh8.generate_tokens(TEXTS[:1], seed=0)[1]["tokens"])


def test_int8_graph_computes_what_the_float_one_does():
    """int8 weights are approximate, so not the same tokens; the same logits within int8's error,
    step after step over the same inputs."""
    eager, _ = twins()
    fast8 = TTS(eager.model, eager.cfg, eager.codec, eager.device, precision="int8", backend="onnx")
    float_graph = TTS(eager.model, eager.cfg, eager.codec, eager.device, backend="onnx")._step_decoder()
    int8_graph = fast8._step_decoder()
    assert int8_graph.path.name.endswith("-int8.onnx")
    import onnx

    weights = {w.name: w for w in onnx.load(str(int8_graph.path)).graph.initializer}
    floats = [n for n, w in weights.items() if w.data_type == onnx.TensorProto.FLOAT and len(w.dims) == 2]
    assert floats == ["embed"]  # every linear's weights are int8; the embedding's rows stay fp32
    assert sum(w.data_type == onnx.TensorProto.INT8 and len(w.dims) == 2 for w in weights.values()) == 1 + 6 * 3  # 6 a layer, the head
    text, lengths = eager._text_batch(TEXTS)
    with torch.inference_mode():
        memory, mask = eager.model.encode(text, lengths)
        caches = [g.start(memory, mask, 20) for g in (float_graph, int8_graph)]
        tokens = torch.randint(0, eager.model.layout.vocab_size, (2, eager.model.layout.n_streams, 20))
        for pos in range(20):
            a, b = (g.step(tokens[:, :, pos : pos + 1], c, pos)[0] for g, c in zip((float_graph, int8_graph), caches))
            error = (a - b).abs().max() / a.abs().max()
            assert 0 < error < 0.1, (pos, error)


def test_int8_graphs_of_two_onnxruntime_versions_are_kept_side_by_side(monkeypatch):
    """An int8 graph is only valid for the ONNX Runtime that quantized it: two environments sharing
    the cache each keep their own file instead of quantizing over the other's every time."""
    import onnxruntime

    decoder = twins()[0].model.decoder
    mine = onnx_decoder.find_or_export(decoder, None, "int8")
    monkeypatch.setattr(onnxruntime, "__version__", onnxruntime.__version__ + ".other")
    theirs = onnx_decoder.find_or_export(decoder, None, "int8")
    monkeypatch.undo()
    assert theirs != mine and theirs.is_file()
    written = mine.stat().st_mtime_ns
    assert onnx_decoder.find_or_export(decoder, None, "int8") == mine
    assert mine.stat().st_mtime_ns == written  # found, not quantized again


def test_a_damaged_cached_graph_is_written_again(capfd):
    """A cached graph cut short (a crash mid-copy, a full disk) is not trusted: it is written
    again, quietly (no ONNX Runtime error printed for the file it could not read)."""
    decoder = twins()[0].model.decoder
    path = onnx_decoder.find_or_export(decoder, None)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert onnx_decoder.graph_props(path) == {}
    capfd.readouterr()
    assert onnx_decoder.find_or_export(decoder, None) == path
    assert path.read_bytes() == whole and onnx_decoder.graph_props(path)[onnx_decoder.DIGEST_KEY]
    assert capfd.readouterr().err == ""


def test_auto_falls_back_to_torch_when_no_graph_can_be_made(monkeypatch, caplog):
    eager, _ = twins()
    monkeypatch.setattr(onnx_decoder, "available", lambda: False)
    assert TTS(eager.model, eager.cfg, eager.codec, eager.device).backend == "torch"
    with pytest.raises(TokttsError, match=r"toktts\[onnx\]"):
        TTS(eager.model, eager.cfg, eager.codec, eager.device, backend="onnx")
    monkeypatch.undo()

    def broken(*args, **kwargs):
        with onnx_decoder._failing("export the decoder step"):
            raise RuntimeError("the exporter's first line\nand pages more")

    monkeypatch.setattr(onnx_decoder, "find_or_export", broken)
    auto = TTS(eager.model, eager.cfg, eager.codec, eager.device)
    _, a = auto.generate_tokens(TEXTS, seed=0)
    _, b = eager.generate_tokens(TEXTS, seed=0)
    assert auto.backend == "torch" and torch.equal(a["tokens"], b["tokens"])
    assert "could not export the decoder step: the exporter's first line; --backend torch" in caplog.text
    asked = TTS(eager.model, eager.cfg, eager.codec, eager.device, backend="onnx")
    with pytest.raises(TokttsError, match="^could not export the decoder step: the exporter's first line;"):
        asked.generate_tokens(TEXTS, seed=0)


def test_a_graph_of_another_precision_or_shape_is_not_used(tmp_path, onnx_cache):
    eager, _ = twins()
    model_dir = tmp_path / "model"
    eager.save_pretrained(model_dir)
    fp32 = TTS.from_pretrained(model_dir, backend="onnx")
    int8 = TTS.from_pretrained(model_dir, precision="int8", backend="onnx")
    int8._step_decoder()
    # an int8 graph where the fp32 one belongs is not taken for it
    (model_dir / onnx_decoder.GRAPH_FILE).write_bytes(int8._onnx.path.read_bytes())
    assert fp32._step_decoder().path != model_dir / onnx_decoder.GRAPH_FILE
    # the same weights with other head counts are another model
    other = tiny_tts(dec_layers=3)
    for blk in other.model.decoder.blocks:
        blk.self_attn.heads = blk.cross_attn.heads = 1
    assert onnx_decoder.digest(other.model.decoder) != onnx_decoder.digest(eager.model.decoder)


def test_backend_errors_are_one_line():
    eager = tiny_tts()
    with pytest.raises(TokttsError, match="backend must be one of auto, torch, onnx, got 'tensorrt'"):
        TTS(eager.model, eager.cfg, eager.codec, eager.device, backend="tensorrt")
    with pytest.raises(TokttsError, match="backend onnx runs fp32 or int8 on a CPU, not bf16"):
        TTS(eager.model, eager.cfg, eager.codec, eager.device, precision="bf16", backend="onnx")
    assert TTS(eager.model, eager.cfg, eager.codec, eager.device, precision="bf16").backend == "torch"  # auto


def test_export_command_writes_the_graph_synthesis_then_uses(tmp_path, onnx_cache):
    def run(*args: str, check: bool = True):  # the CLI's main in this process
        return toktts_here(*args, check=check)

    model_dir = tmp_path / "voice"
    tiny_tts(seed=7).save_pretrained(model_dir)
    proc = run("export", "onnx", "--model", str(model_dir))
    graph = model_dir / onnx_decoder.GRAPH_FILE
    assert str(graph) in proc.stdout and graph.is_file()
    before = set((onnx_cache / "onnx").glob("*")) if (onnx_cache / "onnx").exists() else set()
    say = ["say", "Hello.", "--model", str(model_dir), "--seed", "0"]
    run(*say, "--backend", "onnx", "-o", str(tmp_path / "a.wav"))
    after = set((onnx_cache / "onnx").glob("*")) if (onnx_cache / "onnx").exists() else set()
    assert after == before  # found in the model directory: nothing exported
    run(*say, "--backend", "torch", "-o", str(tmp_path / "b.wav"))
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    run("export", "onnx", "--model", str(model_dir), "--precision", "int8", "--out", str(tmp_path / "q.onnx"))
    assert (tmp_path / "q.onnx").is_file() and (tmp_path / "q.onnx").stat().st_size < graph.stat().st_size
    assert_one_error_line(run("export", "onnx", "--model", str(model_dir), "--out", str(tmp_path), check=False),
                          "is a directory")
    assert_one_error_line(run(*say, "--backend", "onnx", "--precision", "bf16", check=False),
                          "backend onnx runs fp32 or int8")
    bench = toktts("bench", "synth", "--config", "configs/demo.yaml", "--runs", "1", "--seconds", "0.5",
                   "--set", "model.dec_layers=1", "--set", "model.enc_layers=1", "--backend", "onnx")
    assert json.loads(bench.stdout.splitlines()[-1])["backend"] == "onnx"


@pytest.mark.parametrize("change,why", [
    (lambda d: setattr(d.blocks[1].mlp[1], "approximate", "tanh"), "decoder block 1 is not one the step graph"),
    (lambda d: setattr(d, "window", 4), "attention window (model.dec_window) runs in PyTorch"),
])
def test_a_decoder_the_graph_cannot_write_is_spoken_eagerly(caplog, onnx_cache, change, why):
    """The graph is written by hand for today's blocks: another make (a tanh GELU, an attention
    window) is refused by name, and `auto` speaks it in PyTorch."""
    eager, _ = twins()
    change(eager.model.decoder)
    auto = TTS(eager.model, eager.cfg, eager.codec, eager.device)
    _, a = auto.generate_tokens(TEXTS, seed=0)
    _, b = eager.generate_tokens(TEXTS, seed=0)
    assert auto.backend == "torch" and torch.equal(a["tokens"], b["tokens"])
    assert why in caplog.text
