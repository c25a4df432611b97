"""Agent commands:

    andesvl-jax agent --checkpoint DIR [--functions F.json] --image x.png "request" [--execute]
    andesvl-jax agent-grow --from RUN --out DIR [--functions F.json]
    andesvl-jax agent-eval --checkpoint DIR [--n 400] [--style token|text] [--out R.json]
    andesvl-jax agent-reward --checkpoint DIR --out DIR [--steps N]

`agent` prints the call as JSON (function, arguments, raw text, tokens); with --execute it runs the
call on the simulated phone (agent/phone_api.py) and prints the result too. An invalid call is
reported with its error and never executed (exit status 2); an undecodable image is an error.
"""

from __future__ import annotations

import json


def _registry(path):
    from andesvl_jax.agent.functions import load_functions, phone_functions

    return load_functions(path) if path else phone_functions()


def run_agent(args) -> int:
    from andesvl_jax.agent.calls import FunctionCall
    from andesvl_jax.agent.phone_api import ExecutionError, PhoneAPI
    from andesvl_jax.agent.predict import AgentPredictor, load_image
    from andesvl_jax.infer.load import load_model

    registry = _registry(args.functions)
    image = load_image(args.image)
    model, tok = load_model(args.checkpoint)
    predictor = AgentPredictor(
        model, tok, registry, style=args.style, constrained=not args.unconstrained, batch_size=1
    )
    (pred,) = predictor.predict([args.request], [image])
    out = pred.to_json()
    status = 0
    if pred.error is not None:
        out["executed"] = False
        status = 2
    elif args.execute and isinstance(pred.call, FunctionCall):
        try:
            out["execution"] = PhoneAPI(registry).execute(pred.call).to_json()
        except ExecutionError as e:
            out["execution"], status = {"ok": False, "error": str(e)}, 2
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return status


def run_grow(args) -> int:
    from andesvl_jax.agent.grow import grow_workdir

    record = grow_workdir(
        args.source,
        args.out,
        _registry(args.functions),
        functions_file=args.functions,
        tie_head=not args.untied_head_init,
    )
    print(json.dumps(record, indent=2))
    return 0


def run_eval(args) -> int:
    from andesvl_jax.agent.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(
        args.checkpoint,
        _registry(args.functions),
        n=args.n,
        style=args.style,
        constrained=not args.unconstrained,
        latency_calls=args.latency,
        in_context=args.in_context,
        batch_size=args.batch_size,
        split=args.split,
    )
    text = json.dumps(report, ensure_ascii=False, indent=2)
    if args.out:
        from andesvl_jax.data.atomic_io import atomic_write_text

        atomic_write_text(args.out, text)
    print(
        text
        if not args.out
        else json.dumps(
            {k: v for k, v in report.items() if not isinstance(v, (dict, list))}, indent=2
        )
    )
    return 0


def run_reward(args) -> int:
    from andesvl_jax.agent.reward_model import train_reward_model

    summary = train_reward_model(args.checkpoint, args.out, steps=args.steps, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("agent", help="one request + image -> a function call (JSON)")
    p.add_argument("request")
    p.add_argument("--checkpoint", required=True, help="a workdir trained by the functional stage")
    p.add_argument("--functions", default=None, help="function file (default: the phone APIs)")
    p.add_argument("--image", required=True)
    p.add_argument("--execute", action="store_true", help="run the call on the simulated phone")
    p.add_argument("--unconstrained", action="store_true", help="no grammar mask")
    p.add_argument("--style", default="token", choices=("token", "text"))
    p.set_defaults(func=run_agent)

    p = subparsers.add_parser("agent-grow", help="add functional tokens to a trained run")
    p.add_argument("--from", dest="source", required=True, help="a training workdir")
    p.add_argument("--out", required=True)
    p.add_argument("--functions", default=None)
    p.add_argument(
        "--untied-head-init",
        action="store_true",
        help="untied LM head: keep random new rows (default: rows = the new embeddings)",
    )
    p.set_defaults(func=run_grow)

    p = subparsers.add_parser("agent-eval", help="held-out agent accuracy and latency")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--functions", default=None)
    p.add_argument("--n", type=int, default=400, help="held-out requests")
    p.add_argument("--style", default="token", choices=("token", "text"))
    p.add_argument("--unconstrained", action="store_true")
    p.add_argument("--latency", type=int, default=40, help="batch-1 calls timed (0: none)")
    p.add_argument(
        "--in-context",
        action="store_true",
        help="all function descriptions in a system prompt (the in-context baseline)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--split",
        default="heldout",
        choices=("heldout", "train"),
        help="held-out objects/values, or fresh draws of the training distribution",
    )
    p.add_argument("--out", default=None, help="write the report (JSON) here")
    p.set_defaults(func=run_eval)

    p = subparsers.add_parser("agent-reward", help="train the call reward model (scalar head)")
    p.add_argument("--checkpoint", required=True, help="the functional run (its model and data)")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_reward)
