#!/usr/bin/env bash
# Every GPU figure in one go (about 5-8 minutes on an H100/H200), from the repository root:
#   bash benchmarks/gpu_all.sh              on a CUDA machine (wheels for what its Python lacks
#                                           in .whl/, see gpu_setup.sh); results under $OUT
#   bash benchmarks/gpu_all.sh --mps        the same with the CUDA MPS daemon for the packing run
#   bash benchmarks/gpu_all.sh --cpu-smoke  everything tiny on the CPU (under 2 minutes on a
#                                           free machine): checks the script, not the figures
# Prints each figure with the card's name; writes $OUT/bench.json (pytest-benchmark, compare
# with `pytest-benchmark compare`), $OUT/figures.json (the summary's figures), $OUT/log.txt and
# $OUT/env.txt (`pcnbench env`).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 COLUMNS=160
MODE=${1:-}
LIMIT=${GPU_ALL_LIMIT_S:-480}
if [[ "$MODE" == "--cpu-smoke" ]]; then
    ARGS=(--bench-devices cpu --smoke)
    CARD=cpu
else
    source benchmarks/gpu_setup.sh
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    ARGS=(--bench-devices cuda)
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
python3 -m pcnbench.cli env > "$OUT/env.txt" 2>&1 || echo "pcnbench env failed (see $OUT/env.txt)"
if [[ "$MODE" == "--mps" ]]; then
    nvidia-cuda-mps-control -d && export PCNBENCH_MPS=1 || echo "MPS daemon did not start"
fi
echo "== benchmarks on $CARD (limit ${LIMIT}s)"
# order: each figure's own benchmark first; packing before the projection that uses it
timeout "$LIMIT" python3 -m pytest -p no:cacheprovider -q -rs \
    benchmarks/test_resnet_epoch.py benchmarks/test_pcn_step.py benchmarks/test_packing.py \
    benchmarks/test_projection.py benchmarks/test_loop_overhead.py \
    "${ARGS[@]}" --benchmark-json "$OUT/bench.json" --figures-json "$OUT/figures.json" \
    --benchmark-columns=min,median,max,rounds 2>&1 | tee "$OUT/log.txt"
status=${PIPESTATUS[0]}
if [[ "${PCNBENCH_MPS:-0}" == 1 ]]; then echo quit | nvidia-cuda-mps-control; fi
echo "== done on $CARD: exit $status (124: the ${LIMIT}s limit cut it short)"
exit "$status"
