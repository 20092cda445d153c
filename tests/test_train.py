"""Fine-tuning's starting point (`init_weights`): what a new config adds changes nothing at first."""
from __future__ import annotations

import copy

import pytest
import torch

from toktts.errors import TokttsError
from toktts.model import TokTTS
from toktts.train import init_weights

from helpers import batch, tiny_tts


def test_blocks_added_on_top_start_as_the_identity_then_learn(tmp_path):
    base = tiny_tts()
    base.save_pretrained(tmp_path / "base")
    cfg = copy.deepcopy(base.cfg.model)
    cfg.enc_layers, cfg.dec_layers, cfg.enc_conv_layers = 3, 2, 2  # 2 + 1 blocks and a prenet
    model = TokTTS(cfg)
    init_weights(model, str(tmp_path / "base"))
    model.eval()  # no dropout in the comparison
    text, lengths, tokens = batch(model)
    with torch.no_grad():
        want, _ = base.model(text, lengths, tokens)
        got, _ = model(text, lengths, tokens)
    torch.testing.assert_close(got, want)  # the deeper model does what the base model did
    # ... and is not stuck there: the new blocks' weights get gradients
    logits, _ = model(text, lengths, tokens)
    model.loss(logits, tokens)[0].backward()
    for name in ("encoder.blocks.2.self_attn.out.weight", "encoder.blocks.2.mlp.2.weight",
                 "decoder.blocks.1.cross_attn.out.weight", "decoder.blocks.1.mlp.2.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_a_model_of_another_width_or_text_input_is_refused_by_name(tmp_path):
    base = tiny_tts()
    base.save_pretrained(tmp_path / "base")
    cfg = copy.deepcopy(base.cfg.model)
    cfg.enc_dim = 64
    with pytest.raises(TokttsError, match=r"does not fit this model \(\S+: \([\d, ]*32\) vs \([\d, ]*64\)\); use the same model sizes"):
        init_weights(TokTTS(cfg), str(tmp_path / "base"))
    cfg = copy.deepcopy(base.cfg.model)
    cfg.text_input = "phonemes"  # its embedding has more rows, but that is not the news
    with pytest.raises(TokttsError, match="reads chars, this model reads phonemes: train it from scratch"):
        init_weights(TokTTS(cfg), str(tmp_path / "base"))
