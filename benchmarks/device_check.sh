#!/usr/bin/env bash
# The first thing a session lent a GPU runs, in ONE device call (<= 8 minutes):
#   here:   benchmarks/device_wheels.sh            # the wheels the GPU image lacks -> .whl/
#   device: run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=540)
# It (1) times every Pallas kernel compiled against its XLA reference, (2) runs tests/kernels
# compiled (interpret=False), (3) checks every attention impl against the reference on the device,
# (4) measures the train-step MFU of AndesVL-1B joint at 8192 tokens. Results land in $OUT; copy the
# numbers with the device name into docs/benchmarks.md, and record each kernel that ran compiled and
# passed in kernels/dispatch.py VALIDATED so `impl="auto"` may pick it on that backend.
set -uo pipefail
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda} ANDESVL_PALLAS_INTERPRET=0
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
status=0
step() {  # step NAME SECONDS CMD...: run with a time limit, log to $OUT/NAME.txt, keep going
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.txt"
  [ $rc -eq 0 ] || status=1
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c \
  "import jax; print(jax.__version__, jax.devices())"; } > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
step kernels 120 python3 benchmarks/kernel_speed.py --out "$OUT/kernels.json"
step tests_kernels 150 python3 -m pytest -q -x -p no:cacheprovider tests/kernels
step attention_impls 60 python3 benchmarks/attention_impls_check.py --out "$OUT/attention_impls.json"
step mfu_1b_joint 180 python3 benchmarks/mfu.py --config experiments/andesvl.py:size=1b,stage=joint \
  --rows 1 --steps 5 --peak-tflops 989 --out "$OUT/mfu.json"
echo "device check done: status $status (per-step rc in $OUT/summary.txt)"
exit $status
