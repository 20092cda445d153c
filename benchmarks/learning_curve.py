"""How fast a model learns what to say: the teacher-forced CER of several model or checkpoint
directories (say, the checkpoints of one run) on the first N packaged validation sentences.

    python benchmarks/learning_curve.py --corpus corpora/slt-val --limit 40 runs/demo/checkpoints/step-*

Teacher-forced: at every step the model reads the recording's own codes as its past and its
first-ranked code is kept (`TTS.teacher_forced`); the codes are decoded and transcribed with
pocketsphinx. No sampling is involved, so the number moves only with what the model has learned.
`toktts evaluate` reports the same quantity beside the generated CER; this script skips the
generation and the other recordings, about 1 s a sentence on one core.
"""
from __future__ import annotations

import argparse

import torch

from toktts import TTS
from toktts.audio import load_audio
from toktts.asr import PocketSphinx, error_rates, score_text
from toktts.evaluate import resynthesize_and_teacher_force, split_rows


def teacher_forced_cer(model_dir: str, corpus: str, limit: int, asr: PocketSphinx, batch: int = 8) -> tuple[float, float]:
    tts = TTS.from_pretrained(model_dir)
    rows = split_rows(corpus, "val", tts.cfg)[0][:limit]
    refs, hyps = [], []
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        audio = [load_audio(u.wav_path, tts.sampling_rate) for u in chunk]
        spoken = [tts.prepare_text(u.normalized_text) for u in chunk]
        _, forced = resynthesize_and_teacher_force(tts, audio, spoken)
        for u, wav in zip(chunk, forced):
            refs.append(score_text(u.normalized_text))
            hyps.append(score_text(asr.transcribe_audio(wav, tts.sampling_rate)))
    return error_rates(refs, hyps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model or checkpoint directories")
    parser.add_argument("--corpus", default="corpora/slt-val")
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    asr = PocketSphinx(jobs=1)
    print("| model | teacher-forced CER | WER |\n|---|---|---|")
    for model in args.models:
        cer, wer = teacher_forced_cer(model, args.corpus, args.limit, asr)
        print(f"| {model} | {100 * cer:.1f}% | {100 * wer:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
