#!/usr/bin/env bash
# Fetch (here, where PyPI is reachable) the wheels the GPU image lacks, into .whl/ (git-ignored via
# .git/info/exclude); benchmarks/device_check.sh installs them there. The image already has jax,
# flax, optax, orbax, numpy, safetensors, tokenizers, pillow, einops, absl (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_31_x86_64)
for pkg in grain==0.2.18 array_record==0.8.6 ml_collections==1.1.0 tensorboardX==2.6.5 portpicker==1.6.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "$pkg"
done
du -sh .whl
