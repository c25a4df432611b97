"""`andesvl-jax compile-check --config experiments/andesvl.py:size=4b,stage=multitask --mesh fsdp=64,tensor=4`.

Compiles the real train step for abstract inputs on a virtual mesh and prints per-device memory
(train/compile_check.py). `--devices N` gives the mesh N host-platform devices on CPU (the command
re-executes itself with `--xla_force_host_platform_device_count=N` when jax already started with
fewer). Exit status 1 when the step does not fit `--hbm-gib`, with what does not fit and by how much;
2 when the config cannot run at all (a bad field, a mesh the batch does not split over, rows longer
than the model's positions), with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_FLAG = "--xla_force_host_platform_device_count"


def parse_mesh(text: str) -> dict[str, int]:
    """'fsdp=64,tensor=4' -> {'data': 1, 'fsdp': 64, 'tensor': 4} (unnamed axes are 1)."""
    from andesvl_jax.configs import Arg, ConfigArgError, parse_config_arg

    axes = {"data": Arg("1", type=int), "fsdp": Arg("1", type=int), "tensor": Arg("1", type=int)}
    axes["dcn_data"] = Arg(None, type=int)  # only when given: the config's otherwise
    try:
        mesh = parse_config_arg(text, axes, "--mesh")
    except ConfigArgError as e:
        print(f"andesvl-jax compile-check: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return {k: v for k, v in mesh.items() if v is not None}


def _reexec_with_devices(n: int) -> int | None:
    """Run this command again in a process whose CPU platform has `n` devices (None: not needed)."""
    import jax

    if jax.device_count() >= n or jax.default_backend() != "cpu":
        return None
    if os.environ.get("ANDESVL_COMPILE_CHECK_CHILD"):
        raise SystemExit(
            f"andesvl-jax compile-check: asked for {n} devices, jax has {jax.device_count()}"
        )
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_FLAG))
    env = {
        **os.environ,
        "XLA_FLAGS": f"{flags} {_FLAG}={n}".strip(),
        "JAX_PLATFORMS": "cpu",
        "ANDESVL_COMPILE_CHECK_CHILD": "1",
    }
    return subprocess.call([sys.executable, "-m", "andesvl_jax", *sys.argv[1:]], env=env)


def run(args) -> int:
    mesh = parse_mesh(args.mesh)
    import math

    devices = args.devices or math.prod(v for k, v in mesh.items() if k != "dcn_data")
    code = _reexec_with_devices(devices)
    if code is not None:
        return code
    import jax

    from andesvl_jax.train.compile_check import compile_check, shortfall
    from andesvl_jax.train.launch import load_config

    try:  # a config that cannot run (bad field, mesh, length): its message, not a traceback
        try:
            config = load_config(args.config, args.overrides)
        except SystemExit as e:  # load_config's message for a bad argument or override
            raise ValueError(str(e).removeprefix("andesvl-jax train: ")) from None
        with config.unlocked():
            config.mesh.update(mesh)
        report = compile_check(
            config, args.config, hbm_gib=args.hbm_gib, devices=jax.devices()[:devices]
        )
    except ValueError as e:
        print(f"andesvl-jax compile-check: {args.config}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.row(), indent=2))
    if not report.fits:
        print(f"does not fit: {shortfall(report)}", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compile-check", help="compile the real train step ahead of time; per-device memory, fit"
    )
    p.add_argument("--config", required=True, help="experiments/FILE.py[:ARG]")
    p.add_argument("--mesh", default="", help="e.g. fsdp=64,tensor=4 (unnamed axes are 1)")
    p.add_argument("--devices", type=int, default=0, help="virtual devices (default: mesh size)")
    p.add_argument("--hbm-gib", type=float, default=80.0, help="device memory to fit, GiB")
    p.set_defaults(func=run, accepts_overrides=True)
