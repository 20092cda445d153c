"""`toktts samples`: listen to what a model makes of training and validation rows, beside the
codec-resynthesized recording (the best the model could do with this codec)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from toktts.audio import write_wav
from toktts.config import Config
from toktts.data import TokenDataset, cache_dir
from toktts.errors import TokttsError
from toktts.inference import TTS


def write_samples(
    cfg: Config, model_dir: str | None = None, out_dir: str | None = None, limit: int = 4, seed: int = 0
) -> Path:
    """For the first `limit` rows of each split write `<split>/<id>.wav` (generated),
    `<id>_ref.wav` (the cached codes decoded) and `<id>.txt` (the text as the model read it)."""
    tts = TTS.from_pretrained(model_dir or cfg.train.output_dir)
    root = cache_dir(cfg)
    out = Path(out_dir) if out_dir else Path(model_dir or cfg.train.output_dir) / "samples"
    for split in ("train", "val"):
        try:
            dataset = TokenDataset(root, split, tts.cfg.model.text_input)
        except TokttsError:
            raise TokttsError(f"no token cache at {str(root)!r}; run `toktts prepare` with this config") from None
        rows = list(range(min(limit, len(dataset))))
        if not rows:
            continue
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        results = tts.synthesize([dataset.texts[i] for i in rows], seed=seed)
        summary = []
        for i, result in zip(rows, results):
            utt = dataset.ids[i]
            write_wav(folder / f"{utt}.wav", result["audio"], result["sampling_rate"])
            codes = torch.from_numpy(dataset.codes(i))[None].to(tts.device)  # (1, K, T)
            ref = tts.codec.decode(codes)[0].float().cpu().numpy()
            write_wav(folder / f"{utt}_ref.wav", ref, tts.sampling_rate)
            (folder / f"{utt}.txt").write_text(result["text"] + "\n")
            summary.append({"id": utt, "stop_reason": result["stop_reason"],
                            "seconds": len(result["audio"]) / result["sampling_rate"],
                            "ref_seconds": len(ref) / tts.sampling_rate})
        (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return out
