# Sourced by the GPU check scripts: install the carried wheels (.whl/, for what the GPU
# machine's Python lacks, e.g. pydantic) and pcnbench itself into /tmp/site; $OUT for results.
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --target /tmp/site . || exit 1
export PYTHONPATH=/tmp/site
