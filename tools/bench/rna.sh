#!/usr/bin/env bash
# RNA surface segmentation benchmark: GEM-CNN U-Net and the DiffusionNet baseline,
# both on HKS input, trained side by side on whatever part of the train split is
# present, then evaluated per vertex on the original test meshes.
#
#   tools/bench/rna.sh prepare SPLIT      # cache both models' inputs (WORKERS processes)
#   tools/bench/rna.sh train BUDGET_S     # probe speed, pick epochs to fit BUDGET_S, train both
#   tools/bench/rna.sh resume             # continue both runs (after a kill)
#   tools/bench/rna.sh eval               # test-split metrics for both runs
#
# Environment: MESHGDL_DATA (dataset root), MESHGDL_CACHE, RUNS (run folders),
# WORKERS (preprocessing processes), DEVICE (cuda/cpu), PY (python), MAX_EPOCHS.
# The GPU numbers in docs/benchmarks.md came from this script on one H100.
set -euo pipefail
PY=${PY:-python3}
RUNS=${RUNS:-runs/rna}
WORKERS=${WORKERS:-$(nproc)}
DEVICE=${DEVICE:-cuda}
MAX_EPOCHS=${MAX_EPOCHS:-200}
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

epochs_for() {  # $1 = run dir of a 1-epoch probe, $2 = seconds available
    "$PY" - "$1" "$2" "$MAX_EPOCHS" <<'EOF'
import json, sys
m = json.loads(open(sys.argv[1] + "/metrics.jsonl").read().splitlines()[-1])
n_train = 95  # meshes per epoch at --val-fraction 0.1 of the 105 present
per_mesh = m["train_seconds"] / m["train"]["count"] * 15000  # s per ~15k-vertex mesh
epoch_s = per_mesh * n_train * 1.15 + 2.0  # + validation and checkpointing
print(max(1, min(int(sys.argv[3]), int(float(sys.argv[2]) / epoch_s))))
EOF
}

case "${1:-}" in
prepare) prepare "${2:-train}" ;;
train)
    budget=${2:?seconds}
    for m in gem dif; do
        rm -rf "$RUNS/probe_$m"
        train_one $m --epochs 1 --max-meshes 12 --val-fraction 0 --out "$RUNS/probe_$m" > "$RUNS/probe_$m.log" 2>&1
        tail -n 2 "$RUNS/probe_$m.log"
    done
    # Both runs share the GPU; each was probed alone, so allow for contention.
    for m in gem dif; do
        e=$(epochs_for "$RUNS/probe_$m" "$(( budget * 7 / 10 ))")
        echo "$m: $e epochs"
        train_one $m --epochs "$e" --out "$RUNS/$m" > "$RUNS/$m.log" 2>&1 &
    done
    wait
    ;;
resume)
    for m in gem dif; do
        "$PY" -m meshgdl train --resume --out "$RUNS/$m" --device "$DEVICE" --no-progress --in-memory \
            --workers "$WORKERS" >> "$RUNS/$m.log" 2>&1 &
    done
    wait
    ;;
eval)
    for m in gem dif; do
        "$PY" -m meshgdl eval "$RUNS/$m" --split test --device "$DEVICE" --no-progress --workers "$WORKERS" \
            --out "$RUNS/$m/test_metrics.json" > /dev/null 2> "$RUNS/$m.eval.log" || cat "$RUNS/$m.eval.log"
        "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], {k: d[k] for k in d if k in ('accuracy','mean_iou','count','meshes_per_second','peak_memory_mb')})" \
            "$RUNS/$m/test_metrics.json" "$m" || true
    done
    ;;
*) sed -n 2,13p "$0"; exit 2 ;;
esac
