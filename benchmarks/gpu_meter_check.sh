#!/usr/bin/env bash
# One-shot GPU metering check: `pcnbench env`, then one short ResNet-20 cell on CUDA with its
# NVML energy figures. Run from the repository root with wheels for what the machine lacks in .whl/.
set -uo pipefail
source "$(dirname "$0")/gpu_setup.sh"
export COLUMNS=160
python3 -m pcnbench.cli env
python3 -m pcnbench.cli run benchmarks/gpu_resnet.yaml --only "width=1" --output "$OUT/run" \
    --quiet --no-report | tail -4
python3 - "$OUT/run/results.db" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.row_factory = sqlite3.Row
for row in db.execute("SELECT * FROM results"):
    keys = ["accuracy", "train_time_s", "train_energy_j", "energy_method", "train_gpu_energy_j",
            "energy_note", "train_energy_j_est", "peak_mem_bytes", "peak_mem_method",
            "latency_ms", "throughput_sps", "inference_method"]
    print(json.dumps({k: row[k] for k in keys if k in row.keys()}, indent=1))
for row in db.execute("SELECT name, kind, wall_s, gpu_energy_j, gpu_energy_method FROM phases"):
    print(tuple(row))
PY
