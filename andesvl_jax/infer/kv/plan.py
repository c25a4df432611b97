"""Host side of eviction: check the request and fix the static shapes before anything compiles.

`plan` turns (policy, budget, prompt lengths) into per-layer, per-row token targets (dynamic
arrays: a new prompt length does not recompile) and per-layer buffer capacities (static, rounded
up to a multiple of 16 so a serving loop compiles a handful of shapes): `prefill` = the buffer the
chunked prefill runs in, `decode` = the buffer decoding appends to.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from andesvl_jax.infer.kv.budget import Budget
from andesvl_jax.infer.kv.policy import KVPolicy, get_policy


def round_up(n: int, multiple: int = 16) -> int:
    return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class KVSetup:
    """The static half of a plan (hashable: a compile-time argument of the generation loop)."""

    policy: KVPolicy
    prefill: tuple[int, ...]  # slots per KV head of each layer's prefill buffer
    decode: tuple[int, ...]  # ... of its decode buffer (kept + max_new)
    caps: tuple[int, ...]  # most tokens a KV head of each layer keeps


@dataclasses.dataclass(frozen=True)
class KVPlan:
    setup: KVSetup
    budget: Budget
    targets: np.ndarray  # [layers, b] tokens kept per layer and row
    lengths: np.ndarray  # [b] prompt tokens


def plan(
    policy: str | KVPolicy,
    budget,
    lengths,
    *,
    padded: int,
    chunk: int,
    max_new: int,
    num_layers: int,
    vision_counts=None,
) -> KVPlan:
    """Check and size an evicting generation. lengths [b] prompt tokens; padded: the prompt bucket;
    vision_counts [b]: vision tokens per row (they count as protected with protect_vision)."""
    policy = get_policy(policy)
    budget = Budget.parse(budget)
    lengths = np.asarray(lengths, np.int64)
    floor = policy.protected_tokens
    if budget.tokens is not None and budget.tokens < floor:
        raise ValueError(
            f"kv budget of {budget.tokens} tokens is smaller than what {policy.name} always keeps: "
            f"window {policy.window} + sinks {policy.sinks} = {floor}"
        )
    vision = np.zeros_like(lengths) if vision_counts is None else np.asarray(vision_counts)
    kept = np.zeros_like(lengths)
    for r, n in enumerate(lengths):
        protected = min(int(n), floor + (int(vision[r]) if policy.protect_vision else 0))
        if n <= floor:  # nothing outside the protected tokens: all kept
            kept[r] = n
            continue
        kept[r] = budget.kept(int(n))
        if kept[r] < protected:
            raise ValueError(
                f"kv budget {budget} keeps {kept[r]} of row {r}'s {n} prompt tokens, fewer than the "
                f"{protected} that {policy.name} protects (window {policy.window} + sinks "
                f"{policy.sinks}"
                + (f" + {vision[r]} vision tokens" if policy.protect_vision else "")
                + "): raise the budget or lower the window"
            )
    targets = policy.layer_targets(kept, lengths, num_layers)
    targets = np.clip(targets, np.minimum(lengths, floor)[None], lengths[None]).astype(np.int32)
    caps = tuple(
        min(padded, round_up(policy.head_capacity(int(targets[layer].max()))))
        for layer in range(num_layers)
    )
    if policy.schedule == "chunk":
        prefill = tuple(min(padded, c + chunk) for c in caps)
    else:
        prefill = (padded,) * num_layers
    decode = tuple(c + max_new for c in caps)
    return KVPlan(KVSetup(policy, prefill, decode, caps), budget, targets, lengths)
