"""AndesVL at real scale: one file for every size, the stage as an argument.

    andesvl-jax train --config experiments/andesvl.py:size=1b,stage=align \
        --config.init.from_pretrained=/models/AndesVL-1B-Instruct --workdir /ckpt/andesvl-1b/align \
        --config.data.format=llava --config.data.path=/data/align.jsonl --config.data.image_root=/data/images
    andesvl-jax train --config experiments/andesvl.py:size=4b,stage=joint \
        --config.init.from_stage_workdir=/ckpt/andesvl-4b/align_hr --workdir /ckpt/andesvl-4b/joint

size: 0.6b | 1b | 2b | 4b (presets in andesvl_jax/config.py); stage: align | align_hr | joint |
multitask | sft. Budgets follow DESIGN.md section 6 (896 px then 1792 px alignment, 2048->8192 token joint
context, 16384 patches / 32768 tokens multitask). Parameters are FSDP-sharded over every device by
default (`mesh.fsdp=-1`); set `--config.mesh.tensor=N` for tensor parallelism. bf16 compute, fp32
master weights, full remat, layers scanned. Expect the loss to fall steadily from the imported
checkpoint's starting level; on an H100 the 1B joint stage at 8192 tokens is the MFU reference
(benchmarks/train_step.py).
"""

from andesvl_jax.train.config_checks import base_config

# stage -> (steps, peak lr, global batch rows, max tokens per row, max patches per row)
STAGES = {
    "align": (20_000, 1e-4, 256, 2048, 4096),
    "align_hr": (10_000, 5e-5, 128, 8192, 16384),
    "joint": (50_000, 2e-5, 128, 8192, 16384),
    "multitask": (30_000, 2e-5, 64, 32768, 16384),
    "sft": (10_000, 1e-5, 128, 8192, 16384),
}


def get_config(arg: str = "size=1b,stage=sft"):
    args = dict(kv.split("=", 1) for kv in arg.split(",") if kv)
    size, stage = args.get("size", "1b"), args.get("stage", "sft")
    steps, lr, batch, tokens, patches = STAGES[stage]
    c = base_config()
    c.stage = stage
    c.steps = steps
    c.model.preset = size
    c.model.overrides = {
        "dtype": "bfloat16",
        "param_dtype": "float32",
        "remat": "full",
        "scan_layers": True,
    }
    c.mesh = {"data": 1, "fsdp": -1, "tensor": 1}
    c.data.format = "llava"
    c.data.batch_size = batch
    c.data.max_tokens = tokens
    c.data.max_patches = patches
    c.data.worker_count = 8
    c.optim.lr = lr
    c.optim.warmup_steps = int(0.03 * steps)
    c.optim.weight_decay = 0.05
    c.optim.lr_multipliers = {
        "vision": 1.0,
        "projector": 1.0,
        "llm": 1.0 if stage != "joint" else 0.5,
    }
    c.log_every = 50
    c.save_every = 1000
    c.peak_flops = 989e12  # H100 SXM dense bf16; set to your device's peak for the MFU column
    return c
