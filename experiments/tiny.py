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

Quantization-aware training (LSQ, W4A16 group 32, distilled from the float SFT model;
docs/compression.md):

    andesvl-jax train --config experiments/tiny.py:stage=qat --workdir runs/tiny/qat \
        --config.init.from_stage_workdir=runs/demo/sft

Sparse + quantized fine-tuning (1:4 magnitude pruning, W4 g64 kept values, distilled; --config.sparse.*):

    andesvl-jax train --config experiments/tiny.py:stage=sparse --workdir runs/tiny/sparse \
        --config.init.from_stage_workdir=runs/demo/sft

LoRA scenario adapters on the SFT model, and QALFT adapters on its deployed W4A8 base (docs/lora.md):

    andesvl-jax train --config experiments/tiny.py:stage=lora,scenario=count \
        --workdir runs/tiny/lora_count --config.init.from_stage_workdir=runs/demo/sft
    andesvl-jax train --config experiments/tiny.py:stage=qalft,scenario=count \
        --workdir runs/tiny/qalft_count --config.lora.deployed=runs/tiny/w4a8/deployed.safetensors

EAGLE / HASS draft heads for speculative decoding (the head lands in WORKDIR/draft;
docs/speculative.md):

    andesvl-jax train --config experiments/tiny.py:stage=eagle --workdir runs/tiny/eagle \
        --config.init.from_stage_workdir=runs/demo/sft
    andesvl-jax train --config experiments/tiny.py:stage=hass --workdir runs/tiny/hass \
        --config.init.from_stage_workdir=runs/demo/sft

Args (ARGS): stage=align|align_hr|joint|multitask|sft|mpo|grpo_warmup|grpo|qat|sparse|lora|qalft|eagle|hass
(default sft; the andesvl_jax/train/stages.py stage), steps=N (default: the stage's in TINY_STAGES),
scenario=count|gui|numbers (the data of one scenario: SCENARIOS; default: the stage's mixture).

Each trains the tiny preset for a few hundred steps on 56-112 px images (count / colour / OCR-digit
questions) in about a minute per hundred steps on 2 CPU cores; the loss falls from ~6 to well under 1.
"""

from andesvl_jax.configs import Arg, base_config, parse_config_arg

# stage -> what it changes over the common settings of get_config (flattened config keys)
TINY_STAGES: dict[str, dict] = {
    "align": {"steps": 30, "optim.lr": 2e-3},
    "align_hr": {"steps": 100, "optim.lr": 1e-3},
    "joint": {"steps": 80, "optim.lr": 1e-3, "data.stage": "joint"},  # all-text loss policy
    "multitask": {"steps": 250, "optim.lr": 2e-3},
    "sft": {"steps": 1300, "optim.lr": 2e-3},
    # counting questions with a right (chosen) and a wrong (rejected) answer; 16 pairs a batch
    "mpo": {
        "steps": 400,
        "optim.lr": 5e-4,
        "data.stage": "mpo",
        "data.mixture": {"preference": 1.0},
        "data.batch_size": 32,
        "data.max_tokens": 128,
        "data.max_patches": 64,
        "data.worker_count": 0,
    },
    # GRPO's warm-start: 200 SFT steps on math_digits (+ replay)
    "grpo_warmup": {
        "steps": 200,
        "optim.lr": 2e-3,
        "data.mixture": {"math_digits": 1.0, "count": 0.25, "colour": 0.1, "ocr_digits": 0.4},
    },
    # math-in-image (math_digits) rewarded by exact answer, from grpo_warmup
    "grpo": {
        "steps": 200,
        "optim.lr": 5e-4,
        "seed": 1,  # prompts from another stream than the warm-start's labelled samples
        "data.mixture": {"math_digits": 1.0},
        "data.max_tokens": 96,  # prompts <= 80 tokens, 32 patches
        "data.max_patches": 64,
        "grpo.prompts_per_rollout": 16,
        "grpo.group_size": 8,
        "grpo.updates_per_rollout": 1,
        "grpo.beta": 0.04,
        "grpo.max_new_tokens": 4,
        "grpo.temperature": 1.0,
        "grpo.template": "instruct",  # the SFT was Instruct
        # stream order: an easy -> hard curriculum would shift the answer distribution mid-run
        "grpo.curriculum": "",
        "save_every": 50,
    },
    # LSQ QAT of the LLM's linears (compress/). Step sizes at 0.01x the weights' LR: Adam moves a
    # parameter by ~lr per step whatever its size, and a W8 step is ~1e-3 (max|w| / 127), so the
    # LSQ paper's SGD-era 10x wrecked the model within 20 steps (KL 0.9 vs 0.004 at 0.01x, measured)
    "qat": {
        "steps": 200,
        "optim.lr": 2e-4,
        "optim.lr_multipliers.quant": 0.01,
        "quant.rules": "w4a16_g32",
        "quant.distill_weight": 1.0,
        # pure distillation: the student follows the float model, not the labels (eval-quant on the
        # demo: top-1 consistency W4A16 99.5 % vs 98.8 % with the task loss, W4A8 99.0 vs 98.3)
        "quant.task_weight": 0.0,
    },
    # pruned once (magnitude 1:4 = 75 %), kept values LSQ W4 g64, distilled from the dense model
    "sparse": {
        "steps": 200,
        "optim.lr": 2e-4,
        "optim.lr_multipliers.quant": 10.0,
        "sparse.rules": "1:4",
        "sparse.method": "magnitude",
    },
    # LoRA (rank 8, alpha 16) on the LLM's linears, only the factors train
    "lora": {"steps": 200, "optim.lr": 2e-3, "lora.targets": "llm"},
    # the same against the deployed integer base, LoRA branch in fp16 as on the device
    "qalft": {
        "steps": 200,
        "optim.lr": 2e-3,
        "lora.targets": "llm",
        "lora.branch": "float16",
        "lora.deployed": "runs/tiny/w4a8/deployed.safetensors",  # andesvl-jax quantize (docs/lora.md)
    },
    # EAGLE / HASS draft heads on the frozen demo SFT target (train/eagle.py; docs/speculative.md)
    "eagle": {"steps": 400, "optim.lr": 3e-3},
    "hass": {"steps": 400, "optim.lr": 3e-3},
}

# scenario -> the synthetic tasks of its data (one LoRA per scenario: docs/lora.md)
SCENARIOS: dict[str, dict[str, float]] = {
    "count": {"count": 1.0},
    "gui": {"gui_grounding": 1.0},
    "numbers": {"ocr_digits": 1.0},
}

ARGS = {
    "stage": Arg("sft", choices=tuple(TINY_STAGES), help="the training stage"),
    "steps": Arg(None, type=int, help="training steps (default: the stage's)", example="3"),
    "scenario": Arg(
        "none", choices=("none", *SCENARIOS), help="train on one scenario's data (SCENARIOS)"
    ),
}


def get_config(arg: str = "stage=sft"):
    args = parse_config_arg(arg, ARGS, __file__)
    c = base_config()
    c.stage = args["stage"]
    c.model.preset = "tiny"
    # on CPU separate layer modules beat a scan over stacked weights (no per-layer slice copies)
    c.model.scan_layers = False
    c.data.stage = "demo"  # answer-only loss, 112 px area budget
    # colour is learnt first and fast; reading digits and counting need more of the budget
    c.data.mixture = {"count": 1.0, "colour": 0.5, "ocr_digits": 1.5}
    c.data.worker_count = 1  # render/pack the next batches in a second process while the step runs
    # rows of two samples (~72 tokens, <= 64 patches each): attention over a packed row costs its
    # length squared, so short rows of 24 cost ~20 % less per sample than 16 rows of 256 tokens
    c.data.batch_size = 24
    c.data.max_tokens = 160
    c.data.max_patches = 128
    c.data.image_max_size = 112
    c.optim.warmup_steps = 20
    c.optim.weight_decay = 0.0
    c.log_every = 10
    c.save_every = 100
    c.update_from_flattened_dict(TINY_STAGES[args["stage"]])
    if args["scenario"] != "none":
        c.data.mixture = SCENARIOS[args["scenario"]]
    if args["steps"] is not None:
        c.steps = args["steps"]
    return c
