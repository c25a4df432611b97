"""Architecture ablations on the tiny preset: 2D-RoPE on/off x pixel shuffle on/off (docs/ablations.md).

One SFT-style stage from scratch (answer-only loss) on the count / colour / ocr_digits synthetic
mixture of experiments/tiny.py, the same step budget, seed and patch budget in every cell:

    andesvl-jax train --config experiments/ablations.py:rope2d=off,shuffle=on,seed=1 \
        --workdir runs/ablations/rope2d_off-shuffle_on-s1

Args (ARGS): rope2d=on|off, shuffle=on|off (default on), seed=N (default 0), steps=N (default
STEPS), tasks=demo|position (default demo: MIXTURE; position: POSITION_MIXTURE, the powered study's
tasks where positions matter, with colour as a position-free control).

`andesvl-jax ablate` (andesvl_jax/eval/ablate_cli.py) trains every cell for every seed and then
evaluates each model at the training resolution, 2x / 4x more patches and extreme aspect ratios.

The structure switches are the model fields `model.vision.use_rope2d` (VisionConfig) and
`model.pixel_shuffle` (AndesVLConfig) of the run config; the saved run config carries them, so a
run reloads with its own architecture in any process.
"""

from andesvl_jax.configs import Arg, base_config, parse_config_arg

SWITCHES = {"on": True, "off": False}

STEPS = 150  # about 2.5 minutes per run on 2 shared CPU cores (docs/ablations.md)
MAX_PATCHES = 256  # the same patch budget per packed row in every cell
# Room for the text of the ~4-7 samples 256 patches hold. With it, the patch budget alone decides
# the packing, so every cell of a seed trains on exactly the same batches (pixel shuffle off only
# makes their image tokens 4x longer).
TEXT_ROOM = 320
MAX_TOKENS = {True: MAX_PATCHES // 4 + TEXT_ROOM, False: MAX_PATCHES + TEXT_ROOM}
MIXTURE = {"count": 1.0, "colour": 0.5, "ocr_digits": 1.5}  # as experiments/tiny.py
POSITION_MIXTURE = {"count": 1.0, "ocr_digits": 1.0, "spatial": 1.0, "colour": 0.5}
MIXTURES = {"demo": MIXTURE, "position": POSITION_MIXTURE}

ARGS = {
    "rope2d": Arg("on", choices=SWITCHES, help="2D-RoPE in the vision tower"),
    "shuffle": Arg("on", choices=SWITCHES, help="2x2 pixel shuffle before the projector"),
    "seed": Arg("0", type=int, help="training seed", example="1"),
    "steps": Arg(str(STEPS), type=int, help="training steps", example="3"),
    "tasks": Arg("demo", choices=MIXTURES, help="training / eval task mixture"),
}


def get_config(arg: str = "rope2d=on,shuffle=on"):
    args = parse_config_arg(arg, ARGS, __file__)
    c = base_config()
    c.stage = "sft"
    c.steps = args["steps"]
    c.seed = args["seed"]
    c.model.preset = "tiny"
    c.model.vision.use_rope2d = args["rope2d"]
    c.model.pixel_shuffle = args["shuffle"]
    c.data.stage = "demo"  # answer-only loss, 112 px area budget
    c.data.mixture = dict(args["tasks"])
    c.data.worker_count = 1
    c.data.batch_size = 16
    c.data.max_tokens = MAX_TOKENS[args["shuffle"]]
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
