"""A tiny text model trained on the RULER-style long-context tasks (data/synthetic/tasks_long.py),
the model the KV-eviction evaluation scores (eval/long_context.py, docs/kv_eviction.md):

    andesvl-jax train --config experiments/long_context.py --workdir runs/long_context
    andesvl-jax eval-long-context --checkpoint runs/long_context --out runs/kv_eval

Args (ARGS): steps=N (default 500), width=D (LLM hidden size, default 128), layers=L (default 4).

The tiny preset's vision tower stays (unused: the tasks are text-only); its LLM is widened to
`width` (heads of 32, 2 KV heads: GQA, as Qwen3) so that retrieval heads form in a CPU-sized
budget. Measured here: ~20 s per step at load ~5 on 2 cores, ~90 s at load 20-40 (docs/kv_eviction.md).
Prompts of 384-1152 characters (TaskContext.long_context) packed into rows of 1280 tokens,
loss on the answers only.
"""

from andesvl_jax.configs import Arg, base_config, parse_config_arg
from andesvl_jax.data.synthetic import MIXTURES

ARGS = {
    "steps": Arg(500, type=int, help="training steps", example="3"),
    "width": Arg(128, type=int, help="LLM hidden size", example="64"),
    "layers": Arg(4, type=int, help="LLM layers", example="2"),
}


def get_config(arg: str = ""):
    args = parse_config_arg(arg, ARGS, __file__)
    c = base_config()
    c.stage = "sft"
    c.model.preset = "tiny"
    c.model.scan_layers = False
    d = args["width"]
    c.model.text.hidden_size = d
    c.model.text.intermediate_size = 2 * d
    c.model.text.num_layers = args["layers"]
    c.model.text.num_heads = d // 32
    c.model.text.num_kv_heads = 2
    c.model.text.head_dim = 32
    c.data.stage = "sft"  # answer-only loss
    c.data.mixture = dict(MIXTURES["long_context"])
    c.data.batch_size = 8
    c.data.max_tokens = 1280
    c.data.max_patches = 64
    c.data.image_max_size = 112
    c.data.worker_count = 1
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.0
    c.steps = args["steps"]
    c.log_every = 10
    c.save_every = 100
    return c
