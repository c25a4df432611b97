"""Token sampling: greedy, temperature, top-k, top-p and presence penalty, per request in one batch.

Every request carries its own `SamplingParams`; a batch turns them into arrays (`SamplingBatch`), so
greedy and sampled requests, thinking and instruct modes, share one compiled decode loop. Each
request has its own RNG stream: the key for step s is fold_in(PRNGKey(seed), s), so a request's
tokens do not depend on what else is in the batch.

Conventions (as vLLM, which AndesVL's sampling defaults are written for):
  * the presence penalty is subtracted once from the logit of every token already *generated*
    (prompt tokens are not penalised);
  * top-k and top-p filter the temperature-scaled distribution; top-p keeps the smallest prefix of
    the sorted tokens whose probability reaches p (the token that crosses p is kept);
  * temperature 0 means greedy (argmax, after the presence penalty).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    presence_penalty: float = 0.0
    seed: int = 0

    def validate(self) -> SamplingParams:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# AndesVL's defaults per chat mode (DESIGN.md §5): Thinking samples, Instruct decodes greedily.
MODE_DEFAULTS: dict[str, SamplingParams] = {
    "instruct": SamplingParams(),
    "thinking": SamplingParams(temperature=0.6, top_k=20, top_p=0.95, presence_penalty=1.0),
}


class SamplingBatch(NamedTuple):
    """SamplingParams of b requests as arrays [b] (keys: [b, 2] uint32)."""

    temperature: jax.Array
    top_k: jax.Array
    top_p: jax.Array
    presence_penalty: jax.Array
    keys: jax.Array

    @classmethod
    def of(cls, params: list[SamplingParams]) -> SamplingBatch:
        for p in params:
            p.validate()
        col = lambda name, dtype: np.array([getattr(p, name) for p in params], dtype)  # noqa: E731
        keys = np.stack([np.asarray(jax.random.PRNGKey(p.seed)) for p in params])
        return cls(
            col("temperature", np.float32),
            col("top_k", np.int32),
            col("top_p", np.float32),
            col("presence_penalty", np.float32),
            keys,
        )


def allowed_logits(logits: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """logits [b, v] (already temperature-scaled) with tokens outside top-k / top-p set to -inf."""
    v = logits.shape[-1]
    ordered = -jnp.sort(-logits, axis=-1)  # descending
    k = jnp.where(top_k > 0, jnp.minimum(top_k, v), v)
    kth = jnp.take_along_axis(ordered, (k - 1)[:, None], axis=-1)
    ordered = jnp.where(ordered >= kth, ordered, -jnp.inf)
    probs = jax.nn.softmax(ordered, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # probability mass strictly above each token
    keep = before < top_p[:, None]
    floor = jnp.min(jnp.where(keep, ordered, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits >= jnp.maximum(floor, kth), logits, -jnp.inf)


def sample_next(
    logits: jax.Array,
    params: SamplingBatch,
    step: jax.Array,
    generated: jax.Array | None,
    all_greedy: bool,
) -> jax.Array:
    """Next token [b] from logits [b, v] (float32).

    generated: [b, v] bool, tokens emitted so far (for the presence penalty), or None.
    all_greedy: static; skips the sort and the RNG when no request samples.
    """
    if generated is not None:
        logits = logits - params.presence_penalty[:, None] * generated.astype(logits.dtype)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if all_greedy:
        return greedy
    temperature = jnp.maximum(params.temperature, 1e-6)[:, None]
    filtered = allowed_logits(logits / temperature, params.top_k, params.top_p)
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(params.keys, step)
    sampled = jax.vmap(jax.random.categorical)(keys, filtered).astype(jnp.int32)
    return jnp.where(params.temperature > 0, sampled, greedy)
