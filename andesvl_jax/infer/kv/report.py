"""What an evicting generation kept and what its cache occupies, in bytes actually allocated."""

from __future__ import annotations

import dataclasses

import numpy as np

from andesvl_jax.infer.kv.plan import KVPlan


@dataclasses.dataclass(frozen=True)
class KVReport:
    """kept_tokens [b]: mean over layers and KV heads of the prompt entries kept per row;
    *_bytes: K, V and slot positions of every layer, as allocated (a full cache: prompt bucket
    + max_new slots, no position table)."""

    policy: str
    budget: str
    prompt_tokens: np.ndarray
    kept_tokens: np.ndarray
    cache_bytes: int
    full_cache_bytes: int
    prefill_cache_bytes: int
    full_prefill_cache_bytes: int

    @property
    def kept_fraction(self) -> float:
        return float(self.kept_tokens.sum() / max(1, self.prompt_tokens.sum()))

    @property
    def removed_fraction(self) -> float:
        return 1.0 - self.kept_fraction

    def __str__(self) -> str:
        mib = 2.0**20
        return (
            f"kv {self.policy} budget {self.budget}: kept {100 * self.kept_fraction:.1f} % / "
            f"removed {100 * self.removed_fraction:.1f} % of {int(self.prompt_tokens.sum())} "
            f"prompt tokens; decode cache {self.cache_bytes / mib:.3f} MiB "
            f"(full {self.full_cache_bytes / mib:.3f} MiB), prefill cache "
            f"{self.prefill_cache_bytes / mib:.3f} MiB (full {self.full_prefill_cache_bytes / mib:.3f} MiB)"
        )


def make_report(plan: KVPlan, kept: np.ndarray, cfg, batch: int, padded: int, max_new: int, dtype):
    """kept [layers, b * kv] entries kept per layer and (row, head) after the prefill."""
    kv, hd = cfg.num_kv_heads, cfg.head_dim
    item = np.dtype(dtype).itemsize
    per_slot = batch * kv * (2 * hd * item + 4)  # K + V + the int32 position of each slot
    full_slot = batch * kv * 2 * hd * item
    setup = plan.setup
    g = cfg.num_heads // kv
    stats_slot = batch * kv * setup.policy.n_obs * g * 4
    kept_rows = np.asarray(kept).reshape(len(setup.caps), batch, kv).mean(axis=(0, 2))
    return KVReport(
        policy=setup.policy.name,
        budget=str(plan.budget),
        prompt_tokens=plan.lengths.copy(),
        kept_tokens=kept_rows,
        cache_bytes=per_slot * sum(setup.decode),
        full_cache_bytes=full_slot * cfg.num_layers * (padded + max_new),
        prefill_cache_bytes=(per_slot + stats_slot) * sum(setup.prefill),
        full_prefill_cache_bytes=full_slot * cfg.num_layers * (padded + max_new),
    )
