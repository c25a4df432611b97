"""Architecture ablations on the tiny preset: 2D-RoPE on/off x pixel shuffle on/off (docs/ablations.md).

One SFT-style stage from scratch (answer-only loss) on the count / colour / ocr_digits synthetic
mixture of experiments/tiny.py, the same step budget, seed and patch budget in every cell:

    andesvl-jax train --config experiments/ablations.py:rope2d=off,shuffle=on,seed=1 \
        --workdir runs/ablations/rope2d_off-shuffle_on-s1

Args (comma-separated): rope2d=on|off, shuffle=on|off, seed=N, steps=N.

`andesvl-jax ablate` (andesvl_jax/eval/ablate_cli.py) trains every cell for every seed and then
evaluates each model at the training resolution, 2x / 4x more patches and extreme aspect ratios.

The structure switches are `VisionConfig.use_rope2d` and `AndesVLConfig.pixel_shuffle`. The
latter is a top-level field (`model.overrides.pixel_shuffle`); `get_preset` overrides only
top-level fields, so the RoPE-off vision tower is registered here as its own preset
(`tiny_no_rope2d`). Loading this file registers it: a RoPE-off run can be reloaded in any process
that loaded this config first (`ablate` does).
"""

import dataclasses

from andesvl_jax.config import PRESETS
from andesvl_jax.train.config_checks import base_config

SWITCHES = {"on": True, "off": False}
# The RoPE switch picks a preset, because it lives in the nested VisionConfig.
ROPE_PRESETS = {True: "tiny", False: "tiny_no_rope2d"}
PRESETS.setdefault(
    "tiny_no_rope2d",
    PRESETS["tiny"].replace(vision=dataclasses.replace(PRESETS["tiny"].vision, use_rope2d=False)),
)

STEPS = 150  # about 2.5 minutes per run on 2 shared CPU cores (docs/ablations.md)
MAX_PATCHES = 256  # the same patch budget per packed row in every cell
# Room for the text of the ~4-7 samples 256 patches hold. With it, the patch budget alone decides
# the packing, so every cell of a seed trains on exactly the same batches (pixel shuffle off only
# makes their image tokens 4x longer).
TEXT_ROOM = 320
MAX_TOKENS = {True: MAX_PATCHES // 4 + TEXT_ROOM, False: MAX_PATCHES + TEXT_ROOM}
MIXTURE = {"count": 1.0, "colour": 0.5, "ocr_digits": 1.5}  # as experiments/tiny.py


def get_config(arg: str = "rope2d=on,shuffle=on"):
    args = dict(kv.split("=", 1) for kv in arg.split(",") if kv)
    rope2d, shuffle = SWITCHES[args.get("rope2d", "on")], SWITCHES[args.get("shuffle", "on")]
    c = base_config()
    c.stage = "sft"
    c.steps = int(args.get("steps", STEPS))
    c.seed = int(args.get("seed", 0))
    c.model.preset = ROPE_PRESETS[rope2d]
    c.model.overrides.pixel_shuffle = shuffle
    c.data.stage = "demo"  # answer-only loss, 112 px area budget
    c.data.mixture = dict(MIXTURE)
    c.data.worker_count = 1
    c.data.batch_size = 16
    c.data.max_tokens = MAX_TOKENS[shuffle]
    c.data.max_patches = MAX_PATCHES
    c.data.image_max_size = 112
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 20
    c.optim.weight_decay = 0.0
    c.log_every = 10
    c.save_every = 1000  # a checkpoint at the end; the cells are short
    c.tensorboard = False
    c.progress = False
    return c
