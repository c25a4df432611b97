"""Which path of a verified draft tree the target accepts, and the bonus token after it.

Greedy: a node is accepted when its token is the target's argmax at its parent and its parent is
accepted; the deepest accepted node ends the path; the bonus token is the target's argmax there.
The output is then token for token what greedy decoding of the target produces.

Sampling (lossless multi-draft speculative sampling, as EAGLE's tree decoding): from the root,
the children of the current node are tried in order; EAGLE-2 picks drafts deterministically
(top-k), so each child c is a draft with q = one-hot(c), accepted with probability
min(1, p(c) / q(c)) = p(c) under the target's current distribution p; on rejection p becomes the
normalised residual max(p - q, 0) = p with c removed. When no child is accepted the bonus token is
sampled from the residual. Each emitted token is therefore distributed exactly as the target's
(temperature / top-k / top-p filtered) distribution: the probability of accepting the i-th child
equals the residual mass of that token after the earlier rejections, and the bonus draws from what
is left.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from andesvl_jax.infer.sampling import allowed_logits
from andesvl_jax.infer.speculative.tree import DraftTree


class Accepted(NamedTuple):
    """path [b, depth + 1]: node indices root first (entries past `count` repeat the root);
    count [b]: accepted draft tokens a (the path holds a + 1 nodes); bonus [b]: the target's token
    after the path."""

    path: jax.Array
    count: jax.Array
    bonus: jax.Array


def path_to(tree: DraftTree, leaf: jax.Array, depth: int) -> jax.Array:
    """Node indices [b, depth + 1] from the root to `leaf` [b] (root-first; padded with 0)."""
    t = tree.tokens.shape[1]
    on_path = jnp.take_along_axis(tree.ancestors, leaf[:, None, None], axis=1)[:, 0]  # [b, T]
    order = jnp.arange(t, dtype=jnp.int32)
    key = jnp.where(on_path, order, t + order)  # path nodes first, by index = by depth
    path = jnp.argsort(key, axis=1)[:, : depth + 1].astype(jnp.int32)
    length = jnp.take_along_axis(tree.depth, leaf[:, None], axis=1)  # [b, 1]
    return jnp.where(jnp.arange(depth + 1)[None] <= length, path, 0)


def accept_greedy(tree: DraftTree, logits: jax.Array, depth: int) -> Accepted:
    """logits [b, T, v] of the target at every tree node."""
    pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    ok = tree.tokens == jnp.take_along_axis(pred, tree.parent, axis=1)
    ok = ok.at[:, 0].set(True)
    accepted = ok
    for _ in range(depth):
        accepted = ok & jnp.take_along_axis(accepted, tree.parent, axis=1)
    leaf = jnp.argmax(jnp.where(accepted, tree.depth, -1), axis=1).astype(jnp.int32)
    bonus = jnp.take_along_axis(pred, leaf[:, None], axis=1)[:, 0]
    count = jnp.take_along_axis(tree.depth, leaf[:, None], axis=1)[:, 0]
    return Accepted(path_to(tree, leaf, depth), count, bonus)


def target_probs(logits: jax.Array, temperature, top_k, top_p) -> jax.Array:
    """logits [b, T, v] -> the target's sampling distribution at each node, as `sample_next`
    filters it (temperature, then top-k / top-p), float32 [b, T, v]."""
    b, t, v = logits.shape
    scaled = logits / jnp.maximum(temperature, 1e-6)[:, None, None]
    filtered = allowed_logits(
        scaled.reshape(b * t, v), jnp.repeat(top_k, t), jnp.repeat(top_p, t)
    ).reshape(b, t, v)
    return jax.nn.softmax(filtered, axis=-1)


def _sample_row(tokens, parent, probs, key, depth: int):
    """One row: tokens, parent [T]; probs [T, v]; -> (leaf, bonus)."""
    t = tokens.shape[0]
    nodes = jnp.arange(t)

    def level(carry, level_key):
        node, done, bonus = carry
        p = probs[node]
        children = (parent == node) & (nodes > 0)
        draws = jax.random.uniform(level_key, (t,))

        def try_child(c, j):
            p, taken = c
            q_tok = tokens[j]
            mass = jnp.sum(p)
            candidate = children[j] & (taken < 0)
            accept = candidate & (draws[j] * mass < p[q_tok])
            taken = jnp.where(accept, j, taken)
            # rejected: the residual max(p - one_hot, 0) renormalised = p without that token
            p = jnp.where(candidate & ~accept, p.at[q_tok].set(0.0), p)
            return (p, taken), None

        (residual, taken), _ = jax.lax.scan(try_child, (p, jnp.int32(-1)), nodes)
        sample_key = jax.random.fold_in(level_key, t)
        drawn = jax.random.categorical(sample_key, jnp.log(residual)).astype(jnp.int32)
        stop = ~done & (taken < 0)
        bonus = jnp.where(stop, drawn, bonus)
        node = jnp.where(done | stop, node, taken)
        return (node, done | stop, bonus), None

    keys = jax.random.split(key, depth + 1)
    (leaf, _, bonus), _ = jax.lax.scan(level, (jnp.int32(0), False, jnp.int32(0)), keys)
    return leaf, bonus


def accept_sampled(tree: DraftTree, probs: jax.Array, keys: jax.Array, depth: int) -> Accepted:
    """probs [b, T, v] (`target_probs`); keys [b, 2] this step's per-row keys."""
    leaf, bonus = jax.vmap(lambda *a: _sample_row(*a, depth))(tree.tokens, tree.parent, probs, keys)
    count = jnp.take_along_axis(tree.depth, leaf[:, None], axis=1)[:, 0]
    return Accepted(path_to(tree, leaf, depth), count, bonus)
