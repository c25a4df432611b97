"""Group Relative Policy Optimization (DeepSeekMath GRPO), the Thinking models' RL stage.

For each prompt G completions o_1..o_G are sampled from pi_old and scored; every token of o_i gets
the group-normalised advantage A_i = (r_i - mean(r)) / (std(r) + eps_std). Per token:

    rho = exp(log pi_theta - log pi_old)
    obj = min(rho * A, clip(rho, 1 - epsilon, 1 + epsilon_high) * A) - beta * KL
    KL  = exp(ref - theta) - (ref - theta) - 1        (k3: pi_ref/pi_theta - log(pi_ref/pi_theta) - 1)
    loss = -obj, aggregated over the masked completion tokens.

Aggregations (registry `AGGREGATIONS`):
  - "token": sum over all tokens of all sequences / total tokens (DAPO / TRL's default; long
    completions weigh by their length);
  - "sequence": mean over each sequence's tokens, then mean over the sequences that have at least
    one token (the DeepSeekMath formula).
Both return (loss, normaliser, sum) so a trainer can also normalise by global counts itself
(`metrics["loss_sum"] / metrics["normaliser"]`).

Std convention: the sample standard deviation (ddof=1, Bessel-corrected) with eps_std = 1e-4 added
to the std (not under the root). This is TRL's GRPOTrainer (`rewards.view(-1, G).std(dim=1)`;
torch's std is unbiased by default) which the 1e-4 also comes from; DeepSeekMath only writes
std(r). `group_advantages(..., std_ddof=0)` gives the population std.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

Aggregation = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]
AGGREGATIONS: dict[str, Aggregation] = {}


def register_aggregation(name: str) -> Callable[[Aggregation], Aggregation]:
    """Add a per-token-loss aggregation f(per_token_loss [b,t], mask [b,t]) -> (loss, norm, sum)."""

    def wrap(fn: Aggregation) -> Aggregation:
        if name in AGGREGATIONS:
            raise ValueError(f"GRPO aggregation {name!r} is already registered")
        AGGREGATIONS[name] = fn
        return fn

    return wrap


@register_aggregation("token")
def _token_mean(per_token: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    total = jnp.sum(per_token * mask)
    tokens = jnp.sum(mask)
    return total / jnp.maximum(tokens, 1.0), tokens, total


@register_aggregation("sequence")
def _sequence_mean(per_token: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    lengths = jnp.sum(mask, axis=-1)
    per_seq = jnp.sum(per_token * mask, axis=-1) / jnp.maximum(lengths, 1.0)
    has_tokens = (lengths > 0).astype(jnp.float32)
    total = jnp.sum(per_seq * has_tokens)
    sequences = jnp.sum(has_tokens)
    return total / jnp.maximum(sequences, 1.0), sequences, total


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """GRPO hyper-parameters; epsilon_high None means symmetric clipping (= epsilon)."""

    epsilon: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.04
    group_size: int = 8
    eps_std: float = 1e-4
    std_ddof: int = 1
    aggregation: str = "token"
    # The rollout sampling temperature: pi_theta, pi_old and pi_ref are all softmax(logits / T),
    # the distribution the completions were drawn from (as TRL), so the ratio is exactly 1 on-policy.
    temperature: float = 1.0

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"GRPOConfig.aggregation {self.aggregation!r} unknown; choose from "
                f"{sorted(AGGREGATIONS)}"
            )
        if self.group_size < 2:
            raise ValueError(f"GRPOConfig.group_size must be >= 2, got {self.group_size}")
        if self.epsilon < 0 or (self.epsilon_high is not None and self.epsilon_high < 0):
            raise ValueError("GRPOConfig.epsilon and epsilon_high must be >= 0")
        if self.temperature <= 0:
            raise ValueError(
                f"GRPOConfig.temperature must be > 0 (rollouts are sampled), got {self.temperature}"
            )

    @property
    def clip_high(self) -> float:
        """The upper clip offset: epsilon_high, or epsilon when it is None."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


def group_advantages(
    rewards: jax.Array, group_size: int, eps_std: float = 1e-4, std_ddof: int = 1
) -> jax.Array:
    """(r - group mean) / (group std + eps_std) per completion: rewards [n_prompts*G] -> [n].

    The G completions of a prompt must be contiguous. std is the sample std (ddof=1) by default;
    a group whose rewards are all equal gets advantage exactly 0.
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    if rewards.ndim != 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"group_advantages expects rewards [n_prompts * {group_size}], got {rewards.shape}"
        )
    if group_size - std_ddof < 1:
        raise ValueError(f"group_size {group_size} too small for std_ddof {std_ddof}")
    grouped = rewards.reshape(-1, group_size)
    # Shift by each group's first reward first (mean and std are shift-invariant): an all-equal
    # group is then exactly zero, whereas mean() of equal float32 values can round off them.
    grouped = grouped - grouped[:, :1]
    mean = jnp.mean(grouped, axis=-1, keepdims=True)
    std = jnp.std(grouped, axis=-1, keepdims=True, ddof=std_ddof)
    return ((grouped - mean) / (std + eps_std)).reshape(-1)


def k3_kl(policy_token_logp: jax.Array, ref_token_logp: jax.Array) -> jax.Array:
    """Per-token k3 estimate of KL(pi_theta || pi_ref): exp(ref - theta) - (ref - theta) - 1."""
    diff = ref_token_logp - policy_token_logp
    return jnp.exp(diff) - diff - 1.0


def grpo_loss(
    policy_token_logp: jax.Array,
    old_token_logp: jax.Array,
    ref_token_logp: jax.Array | None,
    advantages: jax.Array,
    mask: jax.Array,
    cfg: GRPOConfig | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped GRPO surrogate with a k3 KL penalty, negated and aggregated per `cfg.aggregation`.

    policy/old/ref_token_logp: [b, t] log-probs of the sampled completion tokens (old and ref are
    constants: a stop-gradient is applied); advantages: [b] (from `group_advantages`); mask:
    [b, t] completion tokens. ref_token_logp may be None when cfg.beta == 0. Returns (loss,
    metrics): clip_fraction (tokens whose clipped term is active, i.e. whose gradient is cut),
    mean KL, mean ratio (masked token means), loss_sum / normaliser for exact accumulation.
    """
    cfg = cfg or GRPOConfig()
    if ref_token_logp is None and cfg.beta != 0:
        raise ValueError(f"grpo_loss needs ref_token_logp when beta != 0 (beta={cfg.beta})")
    shapes = {policy_token_logp.shape, old_token_logp.shape, mask.shape}
    if ref_token_logp is not None:
        shapes.add(ref_token_logp.shape)
    if len(shapes) != 1 or advantages.shape != policy_token_logp.shape[:1]:
        raise ValueError(
            f"grpo_loss expects [b, t] log-probs and mask and [b] advantages; got shapes "
            f"{sorted(shapes)} and advantages {advantages.shape}"
        )
    logp = policy_token_logp.astype(jnp.float32)
    old = jax.lax.stop_gradient(old_token_logp.astype(jnp.float32))
    adv = jax.lax.stop_gradient(advantages.astype(jnp.float32))[:, None]
    mask = mask.astype(jnp.float32)

    ratio = jnp.exp(logp - old)
    low, high = 1.0 - cfg.epsilon, 1.0 + cfg.clip_high
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, low, high) * adv)
    if ref_token_logp is None:
        kl = jnp.zeros_like(logp)
    else:
        kl = k3_kl(logp, jax.lax.stop_gradient(ref_token_logp.astype(jnp.float32)))
    per_token = -(surrogate - cfg.beta * kl)

    loss, normaliser, total = AGGREGATIONS[cfg.aggregation](per_token, mask)
    tokens = jnp.maximum(jnp.sum(mask), 1.0)
    ratio_ng = jax.lax.stop_gradient(ratio)
    clipped = ((ratio_ng < low) & (adv < 0)) | ((ratio_ng > high) & (adv > 0))
    metrics = {
        "loss": jax.lax.stop_gradient(loss),
        "loss_sum": jax.lax.stop_gradient(total),
        "normaliser": normaliser,
        "tokens": jnp.sum(mask),
        "clip_fraction": jnp.sum(clipped * mask) / tokens,
        "kl": jax.lax.stop_gradient(jnp.sum(kl * mask) / tokens),
        "ratio": jnp.sum(ratio_ng * mask) / tokens,
        "advantage": jnp.mean(adv),
    }
    return loss, metrics
