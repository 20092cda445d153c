from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toktts.config import config_from_dict, load_config
from toktts.errors import TokttsError

CONFIGS = Path(__file__).parent.parent / "configs"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_files_merge_in_order_and_set_overrides_last(tmp_path):
    a = write(tmp_path, "a.yaml", "model:\n  enc_layers: 3\n  dec_dim: 64\ntrain:\n  lr: 0.01\n")
    b = write(tmp_path, "b.yaml", "model:\n  enc_layers: 5\n")
    cfg = load_config([a, b], ["train.lr=2e-4", "data.corpus=/tmp/c", "generate.seed=3"])
    assert cfg.model.enc_layers == 5  # b wins
    assert cfg.model.dec_dim == 64  # a kept where b is silent
    assert cfg.train.lr == 2e-4
    assert cfg.data.corpus == "/tmp/c"
    assert cfg.generate.seed == 3


@pytest.mark.parametrize(
    "text, key",
    [("model:\n  enc_layer: 3\n", "model.enc_layer"), ("trian:\n  lr: 1\n", "trian")],
)
def test_unknown_key_is_named(tmp_path, text, key):
    with pytest.raises(TokttsError, match=f"unknown config key '{key}'"):
        load_config([write(tmp_path, "c.yaml", text)])


@pytest.mark.parametrize(
    "override, key",
    [("train.max_steps=lots", "train.max_steps"), ("train.compile=3", "train.compile"),
     ("model.dropout=[1]", "model.dropout")],
)
def test_wrong_type_is_named(override, key):
    with pytest.raises(TokttsError, match=f"'{key}' must be"):
        load_config([], [override])


def test_int_is_accepted_for_float_and_bool_is_not_int():
    cfg = load_config([], ["train.lr=1"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    with pytest.raises(TokttsError):
        load_config([], ["train.max_steps=true"])


def test_set_without_equals_and_missing_file():
    with pytest.raises(TokttsError, match="key=value"):
        load_config([], ["train.max_steps"])
    with pytest.raises(TokttsError, match="not found"):
        load_config(["/nonexistent/c.yaml"])


def test_optional_seed_accepts_null():
    assert load_config([], ["generate.seed=null"]).generate.seed is None


@pytest.mark.parametrize("name", ["demo", "ljspeech", "ljspeech_small", "ljspeech_ex_small"])
def test_shipped_configs_load(name):
    cfg = load_config([CONFIGS / f"{name}.yaml"])
    assert cfg.to_dict() == config_from_dict(cfg.to_dict()).to_dict()  # round-trips through a dict


def test_shipped_sizes_match_their_names():
    small = load_config([CONFIGS / "ljspeech_small.yaml"]).model
    assert (small.enc_layers, small.enc_heads, small.enc_dim) == (6, 6, 384)
    assert (small.dec_layers, small.dec_heads, small.dec_dim) == (6, 6, 384)
    ex = load_config([CONFIGS / "ljspeech_ex_small.yaml"])
    assert (ex.model.enc_layers, ex.model.enc_heads, ex.model.enc_dim) == (4, 8, 128)
    assert (ex.model.dec_layers, ex.model.dec_heads, ex.model.dec_dim) == (6, 12, 192)
    assert ex.data.clip_seconds == 2.0 and ex.model.dropout == 0.2
    full = load_config([CONFIGS / "ljspeech.yaml"])
    assert full.codec.name == "encodec" and full.codec.n_codebooks == 2 and full.data.clip_seconds == 0


def test_list_values_from_yaml_and_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("codec:\n  n_codebooks: 4\ntrain:\n  codebook_weights: [4, 1, 1.5, 1]\n")
    assert load_config([path]).train.codebook_weights == [4.0, 1.0, 1.5, 1.0]
    cfg = load_config([path], ["train.codebook_weights=4,1,1,1"])
    assert cfg.train.codebook_weights == [4.0, 1.0, 1.0, 1.0]
    with pytest.raises(TokttsError, match="train.codebook_weights"):
        load_config(None, ["train.codebook_weights=4,x"])


@pytest.mark.parametrize("override, fragment", [
    ("train.codebook_weights=4,1,1", "needs 2 weights"),
    ("train.codebook_weights=0,0", "needs 2 weights"),
    ("train.text_dropout=1.5", "train.text_dropout"),
    ("train.self_sampling=-0.1", "train.self_sampling"),
    ("train.input_noise_near=-1", "train.input_noise_near must be"),
    ("model.input_dropout=1", "model.input_dropout"),
    ("train.ctc_weight=-1", "train.ctc_weight"),
    ("train.grad_accum=0", "train.grad_accum must be from 1"),
    ("train.lr=0", r"train.lr must be in \(0, 10\], got 0.0"),
    ("train.lr=.nan", "train.lr must be"),
    ("train.max_steps=-5", "train.max_steps must be >= 1"),
    ("model.enc_heads=3", r"model.enc_dim \(256\) must be a multiple of model.enc_heads \(3\)"),
    ("model.enc_conv_kernel=4", r"model.enc_conv_kernel \(4\) must be odd"),
    ("train.report_to=bogus", "train.report_to must be one of 'none'"),
    ("generate.temperature=1e-45", "generate.temperature must be 0 or from 0.001"),
    ("generate.seed=100000000000000000000000", "generate.seed must be from 0 to 18446744073709551615"),
    ("generate.max_seconds=-1", "generate.max_seconds must be"),
    ("data.min_seconds=30", "data.min_seconds"),
    ("train.beta2=1", r"train.beta2 must be in \[0, 1\), got 1.0"),
    ("train.text_dropout=1", r"train.text_dropout must be in \[0, 1\) \(a fraction\)"),
])
def test_values_out_of_range_are_one_line_errors(override, fragment):
    with pytest.raises(TokttsError, match=fragment) as info:
        load_config(None, ["codec.n_codebooks=2", override])
    assert "\n" not in str(info.value)


def test_every_rule_names_a_real_setting():
    from toktts.config import RULES, Config

    keys = {f"{s}.{k}" for s, part in Config().to_dict().items() for k in part}
    assert set(RULES) <= keys


def test_model_directory_configs_are_checked_too():
    data = load_config([CONFIGS / "demo.yaml"]).to_dict()
    data["generate"]["top_p"] = 0
    with pytest.raises(TokttsError, match="generate.top_p must be in"):
        config_from_dict(data)


def test_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"train:\n  lr: 0.1 # caf\xe9\n")
    with pytest.raises(TokttsError, match="not UTF-8"):
        load_config([path])


# Any value for any setting: a Config whose values all pass their rules, or one TokttsError line.
_values = st.one_of(
    st.integers(min_value=-10**20, max_value=10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.booleans(), st.none(), st.lists(st.floats(-5, 5), max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(__import__("toktts.config", fromlist=["RULES"]).RULES)), value=_values)
def test_any_value_loads_in_range_or_is_refused_in_one_line(key, value):
    from toktts.config import RULES

    section, name = key.split(".")
    try:
        cfg = config_from_dict({section: {name: value}})
    except TokttsError as e:
        assert "\n" not in str(e) and key in str(e)
        return
    assert RULES[key].allows(getattr(getattr(cfg, section), name))


def test_time_schedule_ends_the_cosine_at_max_minutes_or_max_steps():
    from toktts.train import lr_at

    cfg = load_config([], ["train.schedule=time", "train.max_minutes=60", "train.max_steps=1000",
                           "train.warmup_steps=10", "train.lr=1e-3", "train.min_lr_ratio=0.1"])
    assert lr_at(4, cfg, minutes=59) == pytest.approx(5e-4)  # warm-up goes by steps
    assert lr_at(10, cfg, minutes=0) == pytest.approx(1e-3)
    assert lr_at(10, cfg, minutes=30) == pytest.approx(1e-4 + 9e-4 * 0.5)  # half the minutes: half way
    assert lr_at(10, cfg, minutes=60) == pytest.approx(1e-4)
    assert lr_at(1000, cfg, minutes=1) == pytest.approx(1e-4)  # max_steps first: annealed too
    steps = load_config([], ["train.max_minutes=60", "train.max_steps=1000", "train.warmup_steps=10"])
    assert lr_at(10, steps, minutes=60) == pytest.approx(steps.train.lr)  # schedule=steps ignores time
    with pytest.raises(TokttsError, match="train.schedule=time anneals over train.max_minutes"):
        load_config([], ["train.schedule=time", "train.max_minutes=0"])
