"""Tiny AndesVL on CPU, on the embedded synthetic corpus: one config per stage.

    andesvl-jax train --config experiments/tiny.py:stage=align --workdir runs/tiny/align
    andesvl-jax train --config experiments/tiny.py:stage=joint --workdir runs/tiny/joint \
        --config.init.from_stage_workdir=runs/tiny/align

Post-training from the demo's SFT checkpoint (docs/post_training.md):

    andesvl-jax train --config experiments/tiny.py:stage=mpo --workdir runs/tiny/mpo \
        --config.init.from_stage_workdir=runs/demo/sft
    andesvl-jax train --config experiments/tiny.py:stage=grpo_warmup --workdir runs/tiny/grpo_warmup \
        --config.init.from_stage_workdir=runs/demo/sft
    andesvl-jax train --config experiments/tiny.py:stage=grpo --workdir runs/tiny/grpo \
        --config.init.from_stage_workdir=runs/tiny/grpo_warmup

Stages: align, align_hr, joint, multitask, sft, mpo, grpo_warmup, grpo (andesvl_jax/train/stages.py).
Each trains the tiny preset for a few hundred steps on 56-112 px images (count / colour / OCR-digit
questions) in about a minute per hundred steps on 2 CPU cores; the loss falls from ~6 to well under 1.
"""

from andesvl_jax.train.config_checks import base_config

STAGE_STEPS = {"align": 30, "align_hr": 100, "joint": 80, "multitask": 250, "sft": 1300}
STAGE_STEPS.update(mpo=400, grpo_warmup=200, grpo=200)
STAGE_LR = {"align": 2e-3, "align_hr": 1e-3, "joint": 1e-3, "multitask": 2e-3, "sft": 2e-3}
STAGE_LR.update(mpo=5e-4, grpo_warmup=2e-3, grpo=5e-4)


def get_config(arg: str = "stage=sft"):
    args = dict(kv.split("=", 1) for kv in arg.split(",") if kv)
    stage = args.get("stage", "sft")
    c = base_config()
    c.stage = stage
    c.steps = int(args.get("steps", STAGE_STEPS.get(stage, 200)))
    c.model.preset = "tiny"
    # on CPU separate layer modules beat a scan over stacked weights (no per-layer slice copies)
    c.model.overrides.scan_layers = False
    c.data.stage = "joint" if stage == "joint" else "demo"  # joint keeps its all-text loss policy
    # colour is learnt first and fast; reading digits and counting need more of the budget
    c.data.mixture = {"count": 1.0, "colour": 0.5, "ocr_digits": 1.5}
    c.data.worker_count = 1  # render/pack the next batches in a second process while the step runs
    # rows of two samples (~72 tokens, <= 64 patches each): attention over a packed row costs its
    # length squared, so short rows of 24 cost ~20 % less per sample than 16 rows of 256 tokens
    c.data.batch_size = 24
    c.data.max_tokens = 160
    c.data.max_patches = 128
    c.data.image_max_size = 112
    c.optim.lr = STAGE_LR.get(stage, 1e-3)
    c.optim.warmup_steps = 20
    c.optim.weight_decay = 0.0
    c.log_every = 10
    c.save_every = 100
    if stage == "mpo":  # counting questions with a right (chosen) and a wrong (rejected) answer
        c.data.stage = "mpo"
        c.data.mixture = {"preference": 1.0}
        c.data.batch_size, c.data.max_tokens, c.data.max_patches = 32, 128, 64  # 16 pairs
        c.data.worker_count = 0
    if stage == "grpo_warmup":  # GRPO's warm-start: 200 SFT steps on math_digits (+ replay)
        c.data.mixture = {"math_digits": 1.0, "count": 0.25, "colour": 0.1, "ocr_digits": 0.4}
    if stage == "grpo":  # math-in-image (math_digits) rewarded by exact answer, from grpo_warmup
        c.seed = 1  # prompts from another stream than the warm-start's labelled samples
        c.data.mixture = {"math_digits": 1.0}
        c.data.max_tokens, c.data.max_patches = 96, 64  # prompts <= 80 tokens, 32 patches
        c.grpo.update(prompts_per_rollout=16, group_size=8, updates_per_rollout=1, beta=0.04)
        c.grpo.update(max_new_tokens=4, temperature=1.0, template="instruct")  # SFT was Instruct
        # stream order: an easy -> hard curriculum would shift the answer distribution mid-run
        c.grpo.curriculum = ""
        c.save_every = 50
    return c
