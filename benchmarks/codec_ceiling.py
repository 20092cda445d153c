"""How intelligible is a codec's resynthesis? The ceiling any model trained on its tokens has.

    python benchmarks/codec_ceiling.py --corpus corpora/slt --set codec.frame_rate=25 --set codec.stack=3

Fits the mel codec on the first --fit utterances (as `prepare` does), resynthesizes the next
--test ones, and reports pocketsphinx CER/WER of the originals and of the resynthesis.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from toktts.audio import load_audio, write_wav
from toktts.codecs import build_codec
from toktts.config import load_config
from toktts.corpus import read_corpus
from toktts.asr import PocketSphinx, error_rates, score_text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--fit", type=int, default=600)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config([], ["codec.name=mel", *args.set]).codec
    rows = read_corpus(args.corpus)
    fit_rows, test_rows = rows[: args.fit], rows[args.fit : args.fit + args.test]
    codec = build_codec(cfg)
    t = time.perf_counter()
    codec.fit(load_audio(r.wav_path, cfg.sample_rate) for r in fit_rows)
    fit_s = time.perf_counter() - t
    asr = PocketSphinx()
    with tempfile.TemporaryDirectory() as tmp:
        originals, resynth, seconds, decode_s = [], [], 0.0, 0.0
        for r in test_rows:
            audio = load_audio(r.wav_path, cfg.sample_rate)
            wav = torch.from_numpy(audio)[None]
            codes, frames = codec.encode(wav, torch.tensor([len(audio)]))
            t = time.perf_counter()
            out = codec.decode(codes)[0].numpy()
            decode_s += time.perf_counter() - t
            seconds += len(audio) / cfg.sample_rate
            originals.append(write_wav(Path(tmp) / f"{r.id}.wav", audio, cfg.sample_rate))
            resynth.append(write_wav(Path(tmp) / f"{r.id}_re.wav", out, cfg.sample_rate))
        refs = [score_text(r.normalized_text) for r in test_rows]
        for name, wavs in (("original", originals), ("resynthesized", resynth)):
            hyps = [score_text(h) for h in asr.transcribe(wavs, lambda n: None)]
            cer, wer = error_rates(refs, hyps)
            print(f"{name:>14}: CER {cer:.1%}  WER {wer:.1%}")
    print(f"codec {cfg.n_codebooks}x{cfg.codebook_size} at {cfg.frame_rate} Hz (stack {cfg.stack}): "
          f"fit {fit_s:.1f} s, decode RTF {decode_s / seconds:.3f}, {len(test_rows)} utterances")


if __name__ == "__main__":
    main()
