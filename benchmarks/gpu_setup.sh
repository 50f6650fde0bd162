# Sourced by benchmarks/gpu_all.sh on the GPU machine (no internet; its Python may lack
# pydantic and friends): install the wheels carried in .whl/ and pcnbench itself into
# /tmp/site. Fetch the wheels here first, e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl pydantic pydantic-core annotated-types typing-inspection
# and carry .whl (git-ignored through .git/info/exclude) with the run.
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --target /tmp/site . || exit 1
export PYTHONPATH=/tmp/site
