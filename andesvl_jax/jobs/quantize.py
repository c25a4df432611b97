"""`andesvl-jax quantize`: a trained model -> a deployed integer model (compress/), by one method.

    andesvl-jax quantize --checkpoint runs/demo/sft --rules w4a16_g32 --method gptq --out runs/q/gptq
    andesvl-jax quantize --checkpoint runs/demo/sft --rules w4a16_g32 --method qat --out runs/q/qat
    andesvl-jax quantize --checkpoint runs/q/qat/qat --method qat --out runs/q/qat   # deploy a QAT run

rtn / gptq: the float model, its linears replaced by the rules' QuantLinears, weights quantized
post-training (GPTQ's Hessians and the static activation steps from the first `--calib-batches`
training batches of the checkpoint's run, or of `--config` for a checkpoint that is not a run).
qat: a `qat` stage run (`--config`, default the tiny experiment) from the checkpoint into
OUT/qat, then deployed; a checkpoint that already is a qat run is deployed as it is.

OUT gets `deployed.safetensors` (docs/formats.md §5; `chat`/`eval` open OUT like any checkpoint),
the tokenizer.json of the run if it has one, and `quantize.json` (method, rules, source, the data
settings of the source run, and the bits per weight counted from the file). A finished OUT is
never overwritten without `--overwrite`; the file is written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import pathlib
import shutil

from andesvl_jax.compress import apply_ptq, deploy, quantize_model, save_deployed
from andesvl_jax.compress.bpw import deployed_bits, format_bits
from andesvl_jax.compress.ptq import METHODS as PTQ_METHODS
from andesvl_jax.compress.rules import get_recipe
from andesvl_jax.convert.workdir import RUN_CONFIG, load_run_config, model_config
from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.infer.load import DEPLOYED_FILE, load_model

METHODS = (*PTQ_METHODS, "qat")
TINY_QAT = (
    str(pathlib.Path(__file__).resolve().parents[2] / "experiments" / "tiny.py") + ":stage=qat"
)
REPORT = "quantize.json"


def is_run(path: pathlib.Path) -> bool:
    return (path / RUN_CONFIG).is_file() and (path / "checkpoints").is_dir()


def _data_config(checkpoint: pathlib.Path, config_arg: str, overrides: list[str]):
    """The run config whose training data calibrates: the checkpoint's run, else `config_arg`."""
    if is_run(checkpoint):
        return load_run_config(checkpoint)
    from andesvl_jax.train.launch import load_config

    return load_config(config_arg, overrides)


def ptq_model(checkpoint, rules, method, *, calib_batches, config_arg, overrides, act_order, clip):
    """The float model of `checkpoint` quantized post-training by `method` (rtn | gptq)."""
    from andesvl_jax.train.loop import calibration_batches, calibration_run

    model, tokenizer = load_model(checkpoint)
    config = _data_config(pathlib.Path(checkpoint), config_arg, overrides)
    batches = calibration_batches(config, model_config(config), calib_batches)
    quantize_model(model, rules, exact=True)
    apply_ptq(model, method, calibration_run(batches), clip=clip, act_order=act_order)
    return model, tokenizer, config


def qat_model(checkpoint: pathlib.Path, rules, out: pathlib.Path, *, config_arg, overrides, steps):
    """A qat run from `checkpoint` into OUT/qat (resumed if interrupted), or `checkpoint` itself
    when it already is one -> (model, tokenizer, run config)."""
    if is_run(checkpoint) and load_run_config(checkpoint).get("stage") == "qat":
        run = checkpoint
    else:
        from andesvl_jax.train.launch import load_config
        from andesvl_jax.train.loop import train

        start = "from_stage_workdir" if is_run(checkpoint) else "from_pretrained"
        config = load_config(
            config_arg,
            [
                *overrides,
                f"--config.quant.rules={rules}",
                f"--config.init.{start}={checkpoint}",
                *([f"--config.steps={steps}"] if steps else []),
            ],
        )
        if is_run(checkpoint):  # the architecture is the checkpoint's, whatever the config's preset
            with config.unlocked():
                config.model = load_run_config(checkpoint).model
        if config.stage != "qat":
            raise SystemExit(
                f"--config {config_arg} is stage {config.stage!r}; --method qat needs a qat stage config"
            )
        run = out / "qat"
        train(config, run)
    model, tokenizer = load_model(run)
    return model, tokenizer, load_run_config(run)


def write_deployed(model, tokenizer_source, config, out: pathlib.Path, report: dict) -> dict:
    """deploy -> OUT/deployed.safetensors (+ tokenizer.json, quantize.json); returns the report."""
    path = save_deployed(deploy(model, separate_layers=True), out / DEPLOYED_FILE)
    if tokenizer_source:
        shutil.copyfile(tokenizer_source, out / "tokenizer.json")
    d = config.data
    report = {
        **report,
        "data": {k: d[k] for k in ("image_max_size", "max_tokens", "max_patches")},
        "bits": deployed_bits(path),
    }
    atomic_write_text(out / REPORT, json.dumps(report, indent=2))
    return report


def quantize(
    checkpoint,
    rules: str,
    method: str,
    out,
    *,
    calib_batches: int = 4,
    config_arg: str = TINY_QAT,
    overrides: list[str] = (),
    steps: int | None = None,
    act_order: bool = False,
    clip: str = "absmax",
    overwrite: bool = False,
) -> dict:
    """One quantization of `checkpoint` into `out`; returns quantize.json's content."""
    checkpoint, out = pathlib.Path(checkpoint), pathlib.Path(out)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    get_recipe(rules)  # an unknown recipe fails before any work
    if (out / DEPLOYED_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out / DEPLOYED_FILE} exists: pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    if method == "qat":
        model, _, config = qat_model(
            checkpoint, rules, out, config_arg=config_arg, overrides=list(overrides), steps=steps
        )
    else:
        model, _, config = ptq_model(
            checkpoint, rules, method, calib_batches=calib_batches, config_arg=config_arg,
            overrides=list(overrides), act_order=act_order, clip=clip,
        )  # fmt: skip
    tokenizer_file = config.data.tokenizer or (
        checkpoint / "tokenizer.json" if (checkpoint / "tokenizer.json").is_file() else None
    )
    report = {"method": method, "rules": rules, "source": str(checkpoint)}
    return write_deployed(model, tokenizer_file, config, out, report)


def run(args) -> int:
    report = quantize(
        args.checkpoint,
        args.rules,
        args.method,
        args.out,
        calib_batches=args.calib_batches,
        config_arg=args.config,
        overrides=args.overrides,
        steps=args.steps,
        act_order=args.act_order,
        clip=args.clip,
        overwrite=args.overwrite,
    )
    print(format_bits(report["bits"]))
    print(f"deployed {args.method} {args.rules} model: {pathlib.Path(args.out) / DEPLOYED_FILE}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="quantize a trained model (RTN, GPTQ or QAT) into a deployed integer model"
    )
    p.add_argument("--checkpoint", required=True, help="a training workdir or safetensors dir")
    p.add_argument("--rules", default="w4a16_g32", help="a compress.rules recipe name")
    p.add_argument("--method", choices=METHODS, default="rtn")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--calib-batches", type=int, default=4, help="PTQ calibration batches")
    p.add_argument(
        "--config", default=TINY_QAT, help="qat stage config (qat), data (PTQ of a non-run)"
    )
    p.add_argument("--steps", type=int, default=None, help="qat training steps (default: config's)")
    p.add_argument("--act-order", action="store_true", help="GPTQ with act-order (static groups)")
    p.add_argument("--clip", choices=("absmax", "mse"), default="absmax", help="PTQ step init")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run, accepts_overrides=True)
