"""`andesvl-jax chat --checkpoint DIR [--image x.png ...] [--thinking] "question"`.

Streams the answer to stdout as it is generated. --thinking / --no-thinking pick the mode of a
Thinking model (default: Instruct, no think block); sampling defaults follow the mode (DESIGN §5)
unless --temperature / --top-k / --top-p / --presence-penalty are given. --kv-policy NAME with
--kv-budget (fraction kept, e.g. 0.25, or a token count, e.g. 512) evicts the KV cache
(docs/kv_eviction.md) and prints what was kept and the cache bytes to stderr. --lora NAME=DIR
(repeatable) loads PEFT LoRA adapters into the engine's slots (docs/lora.md); --adapter NAME picks
the one that answers (default: the only one given).
"""

from __future__ import annotations

import dataclasses
import sys


def run(args) -> int:
    from andesvl_jax.infer.engine import Engine, check_kv_request, mode_sampling
    from andesvl_jax.infer.load import load_model

    if args.kv_policy is not None or args.kv_budget is not None:
        try:
            check_kv_request(args.kv_policy, args.kv_budget)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        adapters = lora_adapters(args.lora)
        chosen_adapter = pick_adapter(adapters, args.adapter)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model, tok = load_model(args.checkpoint)
    slots = dict(adapter_slots=len(adapters))
    if adapters:
        slots["adapter_max_rank"] = max(a.max_rank for a in adapters.values())
    engine = Engine(model, tok, image_max_size=args.image_max_size, **slots)
    try:
        for name, adapter in adapters.items():
            engine.load_adapter(name, adapter)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sampling = mode_sampling(args.thinking)
    chosen = {k: getattr(args, k) for k in ("temperature", "top_k", "top_p", "presence_penalty")}
    sampling = dataclasses.replace(
        sampling, seed=args.seed, **{k: v for k, v in chosen.items() if v is not None}
    )
    reply = engine.chat(
        args.question,
        args.image,
        thinking=args.thinking,
        sampling=sampling,
        max_new_tokens=args.max_new_tokens,
        on_text=lambda piece: print(piece, end="", flush=True),
        kv_policy=args.kv_policy,
        kv_budget=args.kv_budget,
        adapter=chosen_adapter,
    )
    print()
    for report in engine.kv_reports:
        print(f"[{report}]", file=sys.stderr)
    if reply.reasoning is not None:
        print(f"[answer] {reply.answer}")
    if reply.finish_reason == "length":
        print(f"[stopped after --max-new-tokens={args.max_new_tokens}]", file=sys.stderr)
    return 0


def lora_adapters(specs) -> dict:
    """['name=DIR', ...] -> {name: Adapter} (PEFT directories, read and checked)."""
    from andesvl_jax.compress.lora_files import load_adapter

    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--lora {spec!r}: expected NAME=DIR")
        if name in out:
            raise ValueError(f"--lora {name!r} given twice")
        out[name] = load_adapter(path)
    return out


def pick_adapter(adapters: dict, name: str | None) -> str | None:
    if name is None:
        return next(iter(adapters)) if len(adapters) == 1 else None
    if name not in adapters:
        raise ValueError(f"--adapter {name!r} is not one of the --lora names {sorted(adapters)}")
    return name


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="ask a checkpoint a question about images")
    p.add_argument("--checkpoint", required=True, help="training workdir or safetensors directory")
    p.add_argument("--image", action="append", default=[], help="an image file (repeatable)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--thinking", dest="thinking", action="store_true", default=None)
    mode.add_argument("--no-thinking", dest="thinking", action="store_false")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--image-max-size", type=int, default=733)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--presence-penalty", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kv-policy",
        help="evict the KV cache: streaming, h2o, snapkv, pyramidkv, adakv or multiwindow",
    )
    p.add_argument(
        "--kv-budget", help="KV entries kept: a fraction in (0, 1] (0.25) or a token count (512)"
    )
    p.add_argument(
        "--lora", action="append", default=[], help="NAME=DIR: a PEFT LoRA adapter (repeatable)"
    )
    p.add_argument("--adapter", help="the --lora adapter that answers (default: the only one)")
    p.add_argument("question")
    p.set_defaults(func=run)
