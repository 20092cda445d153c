#!/usr/bin/env bash
# One arm of a quality A/B (docs/quality.md): fine-tune the bundled voice with configs/finetune.yaml
# plus the arm's --set values on one thread, then evaluate it on the held-out sentences.
#   bash benchmarks/ab_arm.sh NAME [--set key=value ...]
# Writes runs/ab/NAME (the model, history.jsonl) and runs/ab/NAME/eval (metrics.json, report.html).
set -euo pipefail
name=$1; shift
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
toktts prepare --config configs/demo.yaml --config configs/finetune.yaml >/dev/null
toktts train --config configs/demo.yaml --config configs/finetune.yaml --set train.output_dir=runs/ab/$name "$@"
toktts evaluate --model runs/ab/$name --corpus corpora/slt-val --asr-jobs 1 --out runs/ab/$name/eval \
    ${CEILINGS:+--ceilings-from "$CEILINGS"}
