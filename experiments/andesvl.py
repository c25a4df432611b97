"""AndesVL at real scale: one file for every size, the stage as an argument.

    andesvl-jax train --config experiments/andesvl.py:size=1b,stage=align \
        --config.init.from_pretrained=/models/AndesVL-1B-Instruct --workdir /ckpt/andesvl-1b/align \
        --config.data.format=llava --config.data.path=/data/align.jsonl --config.data.image_root=/data/images
    andesvl-jax train --config experiments/andesvl.py:size=4b,stage=joint \
        --config.init.from_stage_workdir=/ckpt/andesvl-4b/align_hr --workdir /ckpt/andesvl-4b/joint \
        --config.data.path=/data/joint.jsonl

Args (ARGS): size=0.6b|1b|2b|4b (default 1b; presets in andesvl_jax/config.py),
stage=align|align_hr|joint|multitask|sft|mpo|grpo_warmup|grpo|qat (default sft; a row of STAGE_BUDGETS).

The data is real: `--config.data.path` (or `data.sources`) must be given (REQUIRED lists it); for mpo
a preference file (chosen/rejected). GRPO's prompts come from the synthetic reasoning tasks
(`data.mixture`, train/rollouts.py); real-data prompt sources for rollouts are not built yet.
Check that a size x stage fits before booking a pod:
    andesvl-jax compile-check --config experiments/andesvl.py:size=4b,stage=multitask --mesh fsdp=64,tensor=4
Budgets follow DESIGN.md section 6 (896 px then 1792 px alignment, 2048->8192 token joint context,
16384 patches / 32768 tokens multitask). Parameters are FSDP-sharded over every device by default
(`mesh.fsdp=-1`); set `--config.mesh.tensor=N` for tensor parallelism. bf16 compute, fp32 master
weights, layers scanned, remat `dots_no_batch` (the weight products' outputs are kept, the rest
recomputed: every size x stage fits 80 GB at one row per device with it, docs/training.md "Will it fit";
use `--config.model.remat=full` for several rows per device). Expect the loss to fall steadily
from the imported checkpoint's starting level; on an H100 the 1B joint stage at 8192 tokens is the
MFU reference (benchmarks/mfu.py, run by benchmarks/device_check.sh).
"""

from typing import NamedTuple

from andesvl_jax.configs import Arg, base_config, parse_config_arg


class Budget(NamedTuple):
    """One stage's schedule and packed-batch geometry."""

    steps: int
    lr: float  # peak
    batch: int  # global batch rows
    tokens: int  # max tokens per row
    patches: int  # max patches per row
    llm_lr: float = 1.0  # the LLM's LR multiplier


# stage (an andesvl_jax/train/stages.py STAGES key) -> its budget; a new stage is a new row
STAGE_BUDGETS: dict[str, Budget] = {
    "align": Budget(20_000, 1e-4, 256, 2048, 4096),
    "align_hr": Budget(10_000, 5e-5, 128, 8192, 16384),
    "joint": Budget(50_000, 2e-5, 128, 8192, 16384, llm_lr=0.5),
    "multitask": Budget(30_000, 2e-5, 64, 32768, 16384),
    "sft": Budget(10_000, 1e-5, 128, 8192, 16384),
    # InternVL's MPO recipe: lr 5e-6, 1 epoch, cosine, warm-up 3 %, wd 0.05; rows = 2 x pairs
    "mpo": Budget(3_000, 5e-6, 128, 8192, 16384),
    "grpo_warmup": Budget(500, 1e-5, 128, 8192, 16384),
    # DeepSeekMath-style GRPO: lr 1e-6; a step is one rollout round of GRPO_ROLLOUT rows
    "grpo": Budget(2_000, 1e-6, 256, 8192, 16384),
    # LSQ QAT of the LLM (compress/) from the SFT checkpoint, distilled from the float model
    "qat": Budget(2_000, 1e-5, 128, 8192, 16384),
}
# A GRPO round: 32 prompts x 8 samples = 256 rows, completions up to 4096 tokens, sampled on a
# tensor-parallel mesh over each host's devices with bf16 weights (train/rollouts.py).
GRPO_ROLLOUT = dict(
    prompts_per_rollout=32,
    group_size=8,
    updates_per_rollout=2,
    max_new_tokens=4096,
    temperature=1.0,
    top_p=1.0,
    generation_dtype="bfloat16",
)

ARGS = {
    "size": Arg("1b", choices=("0.6b", "1b", "2b", "4b"), help="model preset"),
    "stage": Arg("sft", choices=tuple(STAGE_BUDGETS), help="training stage"),
}
# Fields the command line must set, with example values (tests/test_experiment_configs.py).
REQUIRED = {"data.path": "/data/train.jsonl"}


def get_config(arg: str = "size=1b,stage=sft"):
    args = parse_config_arg(arg, ARGS, __file__)
    b = STAGE_BUDGETS[args["stage"]]
    c = base_config()
    c.stage = args["stage"]
    c.steps = b.steps
    c.model.preset = args["size"]
    # dots_no_batch: the cheapest remat that fits every row of the fit table (benchmarks/fit_table.py)
    c.model.update(dtype="bfloat16", param_dtype="float32", remat="dots_no_batch", scan_layers=True)
    c.mesh.update(data=1, fsdp=-1, tensor=1)
    c.data.format = "llava"
    c.data.batch_size = b.batch
    c.data.max_tokens = b.tokens
    c.data.max_patches = b.patches
    c.data.worker_count = 8
    c.optim.lr = b.lr
    c.optim.warmup_steps = int(0.03 * b.steps)
    c.optim.weight_decay = 0.05
    c.optim.lr_multipliers.update(vision=1.0, projector=1.0, llm=b.llm_lr)
    c.log_every = 50
    c.save_every = 1000
    if args["stage"] == "qat":
        # dense fake-quant product (the exact grouped one holds [tokens, K/32, N] partial sums);
        # the trained parameters are evaluated and deployed on the exact path (docs/compression.md).
        # Distillation (quant.distill_weight) takes full [rows, tokens, vocab] teacher and student
        # logits (not chunked yet): off here, on in experiments/tiny.py.
        c.quant.update(rules="w4a16_g32", exact=False, distill_weight=0.0)
        c.optim.lr_multipliers.update(quant=0.01)  # Adam: ~lr per step; steps are ~1e-3 (tiny.py)
    if args["stage"] == "grpo":
        c.data.format = "synthetic"
        c.data.mixture = {"math": 1.0}
        c.grpo.update(GRPO_ROLLOUT)
        c.grpo.generation_mesh.update(data=1, fsdp=1, tensor=-1)
    c.peak_flops = 989e12  # H100 SXM dense bf16; set to your device's peak for the MFU column
    return c
