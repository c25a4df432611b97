"""KV-cache eviction: policies behind one registry, planned on the host, run in the engine.

    from andesvl_jax.infer.kv import get_policy, POLICIES
    engine.generate(samples, kv_policy="snapkv", kv_budget=0.25)          # 25 % kept
    engine.generate(samples, kv_policy=get_policy("snapkv", window=32, schedule="end"), kv_budget=512)

Files: budget (fraction / tokens), policy (interface, registry, pooling, protection), one file per
policy (streaming, h2o, snapkv, pyramidkv, adakv, multiwindow = ours), compact (select + gather),
plan (host checks and static shapes), prefill (the evicting chunked prefill), report (bytes).
"""

from andesvl_jax.infer.kv import adakv, h2o, multiwindow, pyramidkv, snapkv, streaming  # noqa: F401
from andesvl_jax.infer.kv.budget import Budget
from andesvl_jax.infer.kv.plan import KVPlan, KVSetup, plan
from andesvl_jax.infer.kv.policy import POLICIES, KVPolicy, get_policy
from andesvl_jax.infer.kv.report import KVReport, make_report

__all__ = [
    "POLICIES",
    "Budget",
    "KVPlan",
    "KVPolicy",
    "KVReport",
    "KVSetup",
    "get_policy",
    "make_report",
    "plan",
]
