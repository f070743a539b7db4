#!/usr/bin/env bash
# RNA surface segmentation benchmark: GEM-CNN U-Net and the DiffusionNet baseline,
# both on HKS input, trained side by side on whatever part of the train split is
# present, then evaluated per vertex on the original test meshes.
#
#   tools/bench/rna.sh prepare SPLIT      # cache both models' inputs (WORKERS processes)
#   tools/bench/rna.sh train              # train both (GEM_EPOCHS, DIF_EPOCHS)
#   tools/bench/rna.sh resume             # continue both runs (after a kill)
#   tools/bench/rna.sh eval               # test-split metrics for both runs
#
# Environment: MESHGDL_DATA (dataset root), MESHGDL_CACHE, RUNS (run folders),
# WORKERS (preprocessing processes), DEVICE (cuda/cpu), PY (python), GEM_EPOCHS (22),
# DIF_EPOCHS (70): the runs reported in docs/benchmarks.md (8 and 4 min on one H100).
set -euo pipefail
PY=${PY:-python3}
RUNS=${RUNS:-runs/rna}
WORKERS=${WORKERS:-$(nproc)}
DEVICE=${DEVICE:-cuda}
GEM_EPOCHS=${GEM_EPOCHS:-22}
DIF_EPOCHS=${DIF_EPOCHS:-70}
mkdir -p "$RUNS"

# Model options (same input features as DiffusionNet's "hks" row: 16 HKS scales).
GEM_OPTS=(--model gem --model-option n_levels=4 --model-option "hidden_irreps=32x0 + 32x1 + 32x2"
          --model-option n_layers=2 --model-option dropout=0.1)
DIF_OPTS=(--model diffusion --model-option width=128 --model-option n_layers=4 --model-option dropout=0.5)
COMMON=(--dataset rna --lr 1e-3 --warmup-epochs 2 --grad-clip 1.0 --batch-size 1 --seed 0 --nondeterministic
        --augment-rotate none --val-fraction 0.1 --skip-bad-meshes --device "$DEVICE" --in-memory --no-progress
        --workers "$WORKERS")

train_one() {  # $1 = gem|dif, then extra meshgdl-train options
    local m=$1; shift
    if [ "$m" = gem ]; then "$PY" -m meshgdl train "${COMMON[@]}" "${GEM_OPTS[@]}" "$@"
    else "$PY" -m meshgdl train "${COMMON[@]}" "${DIF_OPTS[@]}" "$@"; fi
}

prepare() {  # one pass serves both models (see rna_prepare.py)
    "$PY" "$(dirname "$0")/rna_prepare.py" "$1" "$WORKERS"
}

case "${1:-}" in
prepare) prepare "${2:-train}" ;;
train)  # one after the other, so each run's throughput is its own
    for m in gem dif; do
        if [ "$m" = gem ]; then e=$GEM_EPOCHS; else e=$DIF_EPOCHS; fi
        train_one $m --epochs "$e" --out "$RUNS/$m" > "$RUNS/$m.log" 2>&1
        tail -n 2 "$RUNS/$m.log"
    done
    ;;
resume)
    for m in gem dif; do
        "$PY" -m meshgdl train --resume --out "$RUNS/$m" --device "$DEVICE" --no-progress --in-memory \
            --workers "$WORKERS" >> "$RUNS/$m.log" 2>&1
    done
    ;;
eval)
    for m in gem dif; do
        "$PY" -m meshgdl eval "$RUNS/$m" --split test --device "$DEVICE" --no-progress --workers "$WORKERS" \
            --out "$RUNS/$m/test_metrics.json" > /dev/null 2> "$RUNS/$m.eval.log" || true
        tail -n 1 "$RUNS/$m.eval.log"  # "meshgdl: rna/test: N meshes, accuracy ..., mean IoU ..."
    done
    ;;
*) sed -n 2,13p "$0" >&2; exit 2 ;;
esac
