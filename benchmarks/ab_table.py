"""Markdown rows from `toktts evaluate` outputs: one row per metrics.json given.

    python benchmarks/ab_table.py runs/ab/*/eval*/metrics.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def row(path: Path) -> str:
    m = json.loads(path.read_text())
    t, s = m["totals"], m["sampling"]
    arm = path.parent.parent.name if path.parent.name.startswith("eval") else path.parent.name
    guidance = f" cfg {s['cfg_scale']}" if s.get("cfg_scale", 1.0) != 1.0 else ""
    chunks = f" chunks of {s['chunk_chars']}" if s.get("chunk_chars") else ""
    cells = [
        f"{arm} ({path.parent.name}{guidance}{chunks})", f"{t['cer_generated']:.1%}", f"{t['cer_teacher_forced']:.1%}",
        f"{t['wer_generated']:.1%}", f"{t['runaways']}/{t['sentences']}", f"{t['duration_ratio_median']:.2f}",
        f"{t['rtf_generate']:.3f}", f"{t['cer_resynthesized']:.1%}", f"{t['cer_reference']:.1%}",
    ]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    print("| arm | CER generated | CER teacher-forced | WER generated | runaways | duration ratio | RTF model "
          "| CER resynthesis | CER recordings |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(row(Path(arg)))
