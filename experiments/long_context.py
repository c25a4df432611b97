"""A tiny text model trained on the RULER-style long-context tasks (data/synthetic/tasks_long.py),
the model the KV-eviction evaluation scores (eval/long_context.py, docs/kv_eviction.md):

    andesvl-jax train --config experiments/long_context.py --workdir runs/long_context
    andesvl-jax eval-long-context --checkpoint runs/long_context --out runs/kv_eval

Args (ARGS): steps=N (default 500), width=D (LLM hidden size, default 128), layers=L (default 4),
lengths=MIN-MAX (prompt characters of the lc_* tasks, default 384-1152), row=N (tokens per packed
row, default 1280; must hold MAX + ~140), batch=N (rows per step, default 8), lr=X (default 2e-3),
mix=uniform|retrieval (task weights; retrieval favours the short-answer retrieval tasks).

The tiny preset's vision tower stays (unused: the tasks are text-only); its LLM is widened to
`width` (heads of 32, 2 KV heads: GQA, as Qwen3). Loss on the answers only. Measured (quiet box):
2.5 s per step at the defaults; the stages actually trained (short prompts first, each starting
from the previous with --config.init.from_stage_workdir) are in docs/kv_eviction.md.
"""

from andesvl_jax.configs import Arg, base_config, parse_config_arg
from andesvl_jax.data.synthetic import MIXTURES


def _span(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


ARGS = {
    "steps": Arg(500, type=int, help="training steps", example="3"),
    "width": Arg(128, type=int, help="LLM hidden size", example="64"),
    "layers": Arg(4, type=int, help="LLM layers", example="2"),
    "lengths": Arg("384-1152", type=_span, help="prompt characters MIN-MAX", example="128-640"),
    "row": Arg(1280, type=int, help="tokens per packed row", example="768"),
    "batch": Arg(8, type=int, help="rows per step", example="16"),
    "lr": Arg(2e-3, type=float, help="peak learning rate", example="3e-3"),
    # the share of each task's samples; "retrieval" favours the short-answer retrieval tasks, whose
    # answer tokens (unlike most of the summary's template) cannot be predicted without attention
    "mix": Arg("uniform", choices=("uniform", "retrieval"), help="task weights"),
}
RETRIEVAL_MIX = {
    "niah_single": 2.0,
    "niah_multikey": 1.5,
    "vartrack": 1.0,
    "cwe": 1.0,
    "summary": 0.5,
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
    if args["mix"] == "retrieval":
        c.data.mixture = {f"lc_{t}": w for t, w in RETRIEVAL_MIX.items()}
    c.data.long_context = args["lengths"]
    c.data.batch_size = args["batch"]
    c.data.max_tokens = args["row"]
    c.data.max_patches = 64
    c.data.image_max_size = 112
    c.data.worker_count = 1
    c.optim.lr = args["lr"]
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.0
    c.steps = args["steps"]
    c.log_every = 10
    c.save_every = 100
    return c
