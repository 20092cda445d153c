"""The `TTS` facade's boundary: whatever a caller passes, a result or one TokttsError line."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toktts.devices import resolve_device
from toktts.errors import TokttsError
from toktts.inference import TTS, text_to_speech_pipeline

from helpers import tiny_tts


@pytest.fixture(scope="module")
def tiny() -> TTS:
    return tiny_tts()


# Values a caller might pass for any option: right ones, wrong ones, wrong types.
_any = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 20), st.integers(min_value=2**63, max_value=2**70),
    st.sampled_from([0.0, 0.5, 0.95, 1.0, 1.5, -1.0, 1e-45, math.nan, math.inf, -math.inf]),
    st.sampled_from(["x", "", "0.5", [1, 2], {"a": 1}, b"\x00"]),
)
_options = st.fixed_dictionaries({}, optional={name: _any for name in (
    "temperature", "top_k", "top_p", "cfg_scale", "seed", "best_of", "retries", "verify", "max_seconds")})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=_options)
def test_any_options_give_audio_or_one_clear_error(tiny, options):
    options = dict(options)
    if options.get("best_of") not in (None, 1) or options.get("verify") is True:
        options.pop("best_of", None)  # ASR takes: right, but slow for a property test
        options.pop("verify", None)
    if isinstance(options.get("max_seconds"), (int, float)) and not isinstance(options["max_seconds"], bool) \
            and 0 < options["max_seconds"] <= 600:
        options["max_seconds"] = 0.3  # any valid length: keep the test short
    try:
        out = tiny("Hi there.", **options)
    except TokttsError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert out["audio"].dtype == np.float32 and np.isfinite(out["audio"]).all()


@pytest.mark.parametrize("kwargs, words", [
    (dict(temperature=math.nan), "temperature must be 0 or from 0.001 to 100"),
    (dict(top_k=1.5), "top_k must be a whole number"),
    (dict(seed=2**70), "seed must be from 0"),
    (dict(max_seconds=-1), "max_seconds must be in (0, 600]"),
    (dict(max_seconds=math.nan), "max_seconds"),
    (dict(retries=-1), "retries must be from 0 to 16"),
    (dict(verify="yes"), "verify must be True or False"),
    (dict(beams=4), "unknown synthesis option(s) ['beams']"),
    (dict(best_of=0), "best_of must be from 1 to 16"),
    (dict(cfg_scale=math.nan), "cfg_scale must be from 0 to 10"),
    (dict(temperature=math.inf), "temperature must be 0 or"),
    (dict(temperature=-1.0), "temperature must be 0 or"),
    (dict(temperature=1e-45), "temperature must be 0 or"),
    (dict(temperature="x"), "temperature must be a number, got 'x'"),
])
def test_bad_values_name_the_argument(tiny, kwargs, words):
    with pytest.raises(TokttsError) as info:
        tiny("Hi.", **kwargs)
    assert words in str(info.value)


def test_stream_and_generate_tokens_check_the_same_way(tiny):
    with pytest.raises(TokttsError, match="temperature"):
        list(tiny.stream("Hi.", temperature=-1))
    with pytest.raises(TokttsError, match="top_p"):
        tiny.generate_tokens(["Hi."], top_p=0)
    with pytest.raises(TokttsError, match="text must be a string"):
        tiny(42)


def test_pipeline_forward_params_must_be_a_dict(tiny, tmp_path):
    pipe = text_to_speech_pipeline(tiny.save_pretrained(tmp_path / "tiny"))
    with pytest.raises(TokttsError, match="forward_params must be a dict"):
        pipe("Hi.", forward_params="greedy")
    with pytest.raises(TokttsError, match="do_sample must be True or False"):
        pipe("Hi.", forward_params={"do_sample": "no"})
    assert pipe("Hi.", forward_params={"do_sample": False, "max_seconds": 0.3})["audio"].dtype == np.float32


@pytest.mark.parametrize("device, words", [
    ("toaster", "unknown device 'toaster'"), ("cuda:0", "no CUDA GPU"), ("meta", "not supported"),
])
def test_devices_are_checked(device, words):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(TokttsError, match=words):
        resolve_device(device)
    assert resolve_device("cpu").type == "cpu"


def _longest_zero_run(audio: np.ndarray) -> int:
    zero = np.concatenate([[0], (audio == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def test_ssml_breaks_and_the_lexicon_reach_the_audio(tiny):
    out = tiny('<speak>Hi there. <break time="1500ms"/> <sub alias="bye now">BN</sub></speak>', seed=0,
               max_seconds=0.3, retries=0)
    assert [c["text"] for c in out["chunks"]] == ["hi there.", "bye now."]
    assert _longest_zero_run(out["audio"]) >= 1.5 * tiny.sampling_rate  # the break, as silence
    tiny.use_lexicon({"Nguyen": "win"})
    try:
        assert tiny("Nguyen.", seed=0, max_seconds=0.3)["text"] == "win."
    finally:
        tiny.use_lexicon(None)
    with pytest.raises(TokttsError, match="a lexicon is a dict"):
        tiny.use_lexicon(42)


def test_int8_decoder_is_close_to_fp32_and_saves_float_weights(tiny, tmp_path):
    from toktts.checkpoint import load_model_dir

    fast = TTS(tiny.float_model, tiny.cfg, tiny.codec, torch.device("cpu"), precision="int8")
    assert fast.model.decoder is not tiny.model.decoder and fast.model.encoder is tiny.model.encoder
    text, lengths = fast._text_batch(["hi there."])
    tokens = torch.randint(0, 1024, (1, fast.model.layout.n_streams, 20))
    with torch.inference_mode():
        exact = tiny.model(text, lengths, tokens)[0]
        approx = fast.model(text, lengths, tokens)[0]
    assert (approx - exact).abs().max() < 0.1 * exact.abs().max()  # int8 rounding, not another model
    out = fast("Hi there.", seed=0, max_seconds=0.3)
    assert out["audio"].dtype == np.float32 and len(out["audio"]) > 0
    saved, _, _ = load_model_dir(fast.save_pretrained(tmp_path / "m"))  # float weights, loadable
    for name, value in tiny.float_model.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[name], value)
    with pytest.raises(TokttsError, match="precision must be one of"):
        TTS(tiny.float_model, tiny.cfg, tiny.codec, torch.device("cpu"), precision="int4")
