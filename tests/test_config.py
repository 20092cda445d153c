from pathlib import Path

import pytest

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
    path.write_text("train:\n  codebook_weights: [4, 1, 1.5, 1]\n")
    assert load_config([path]).train.codebook_weights == [4.0, 1.0, 1.5, 1.0]
    assert load_config(None, ["train.codebook_weights=4,1,1,1"]).train.codebook_weights == [4.0, 1.0, 1.0, 1.0]
    with pytest.raises(TokttsError, match="train.codebook_weights"):
        load_config(None, ["train.codebook_weights=4,x"])


@pytest.mark.parametrize("override, fragment", [
    ("train.codebook_weights=4,1,1", "needs 2 weights"),
    ("train.codebook_weights=0,0", "needs 2 weights"),
    ("train.text_dropout=1.5", "train.text_dropout"),
    ("train.self_sampling=-0.1", "train.self_sampling"),
    ("model.input_dropout=1", "model.input_dropout"),
    ("train.ctc_weight=-1", "train.ctc_weight"),
])
def test_training_levers_out_of_range(override, fragment):
    from toktts.train import check_train_config

    cfg = load_config(None, ["codec.n_codebooks=2", override])
    with pytest.raises(TokttsError, match=fragment):
        check_train_config(cfg)
