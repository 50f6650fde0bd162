#!/usr/bin/env bash
# One-shot GPU check, run on a CUDA machine from the repository root with wheels in .whl/
# for what its Python lacks (pydantic). Writes results under $OUT (default ./gpu-out).
set -uo pipefail
source "$(dirname "$0")/gpu_setup.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "== quickstart (device auto)"
/usr/bin/time -f "quickstart wall %e s" python3 -m pcnbench.cli run suites/quickstart.yaml \
    --output "$OUT/quickstart" --quiet | tail -3
echo "== ResNet-20 widths 1 and 4 on CIFAR-shaped synthetic data, 3 epochs"
/usr/bin/time -f "gpu_resnet wall %e s" python3 -m pcnbench.cli run benchmarks/gpu_resnet.yaml \
    --output "$OUT/gpu_resnet" --quiet
python3 -m pcnbench.cli results "$OUT/gpu_resnet" --format csv > "$OUT/gpu_resnet.csv"
python3 - "$OUT/gpu_resnet/results.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for label, device in db.execute("SELECT label, device FROM cells"):
    print("cell", label, "on", device)
for row in db.execute("SELECT c.label, e.epoch, e.seconds, e.train_loss FROM epochs e JOIN cells c USING (cell_id)"):
    print("epoch", row)
PY
echo "== loop overhead on cuda"
python3 benchmarks/bench_loop_overhead.py --device cuda --repeats 5
echo "== tests (CUDA ones included)"
python3 -m pytest -q -p no:cacheprovider tests/test_session.py tests/test_data.py tests/test_counting.py -x 2>&1 | tail -4
