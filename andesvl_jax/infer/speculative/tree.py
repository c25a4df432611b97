"""EAGLE-2's dynamic draft tree: grown by cumulative draft confidence, reranked, and laid out for
one verification forward of the target.

Growth: depth 1 = the draft's top_k tokens after the root. Each later draft step runs the draft
once on the current frontier (top_k nodes), each node attending to the committed prefix and its
own ancestors in the draft cache (a `TreeMask`); every frontier node proposes top_k children
scored parent score + log q(child); the top_k of those top_k^2 become the next frontier. All
proposed nodes are candidates; the `total_tokens` best by score are verified.

Log-probabilities are <= 0, so a child never outscores its parent, and `lax.top_k` prefers the
lower index on ties, where parents sit: the chosen set always holds every chosen node's ancestors.
Sorted by candidate index it is in topological order (parents first).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from andesvl_jax.infer.speculative.params import TreeParams
from andesvl_jax.models.kv_cache import TreeMask


class DraftTree(NamedTuple):
    """The verified tree per row, node 0 = the root (the last committed token, not yet in the
    target's cache). tokens, parent, depth: [b, T] (the root is its own parent, depth 0);
    ancestors [b, T, T]: node i sees node j (j an ancestor of i, or i itself)."""

    tokens: jax.Array
    parent: jax.Array
    depth: jax.Array
    ancestors: jax.Array


def ancestor_mask(parent: jax.Array, depth: int) -> jax.Array:
    """parent [b, T] (topological, root its own parent) -> [b, T, T] ancestor-or-self mask."""
    t = parent.shape[-1]
    eye = jnp.eye(t, dtype=bool)[None]
    mask = jnp.broadcast_to(eye, parent.shape + (t,))
    for _ in range(depth):  # each pass adds one more generation of ancestors
        mask = eye | jnp.take_along_axis(mask, parent[:, :, None], axis=1)
    return mask


def grow(draft, target_llm, root_feature, root_token, lengths, draft_kv, params: TreeParams):
    """Grow the tree from the draft feature of the root's position.

    root_feature [b, d]: the draft's output at the root's input position (it predicts depth 1);
    root_token [b]; lengths [b]: the committed length n (the root's position; the draft cache
    holds positions < n); draft_kv: (k, v) of the draft layer, whose slots from n on are scratch.
    -> (DraftTree, draft_kv).
    """
    k, depth, b = params.top_k, params.depth, root_token.shape[0]
    width = max(depth - 1, 1) * k
    logp = jax.nn.log_softmax(draft.logits(target_llm, root_feature), axis=-1)
    score, ids = jax.lax.top_k(logp, k)  # [b, k]
    tokens = [draft.to_target(ids)]
    scores, parents, depths = (
        [score],
        [jnp.full((b, k), -1, jnp.int32)],
        [jnp.ones((b, k), jnp.int32)],
    )
    front = dict(
        index=jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (b, k)),
        token=tokens[0],
        score=score,
        feature=jnp.broadcast_to(root_feature[:, None], (b, k, root_feature.shape[-1])),
        seen=jnp.broadcast_to(jnp.eye(k, width, dtype=bool), (b, k, width)),
    )
    offset = k  # candidate index of the next block
    for d in range(1, depth):
        positions = jnp.broadcast_to((lengths + d - 1)[:, None], (b, k))
        g, draft_kv = draft(
            target_llm.embed(front["token"]),
            front["feature"],
            positions,
            jnp.ones((b, k), jnp.int32),
            draft_kv,
            lengths + (d - 1) * k,
            TreeMask(lengths, front["seen"]),
        )
        logp = jax.nn.log_softmax(draft.logits(target_llm, g), axis=-1)  # [b, k, v]
        child_score, child_ids = jax.lax.top_k(logp, k)  # [b, k, k]
        block_score = (front["score"][:, :, None] + child_score).reshape(b, k * k)
        block_token = draft.to_target(child_ids).reshape(b, k * k)
        tokens.append(block_token)
        scores.append(block_score)
        parents.append(jnp.repeat(front["index"], k, axis=1))
        depths.append(jnp.full((b, k * k), d + 1, jnp.int32))
        if d < depth - 1:
            best_score, best = jax.lax.top_k(block_score, k)  # [b, k] within the block
            owner = best // k  # the frontier node each new frontier node grew from
            slot = jax.nn.one_hot(d * k + jnp.arange(k), width, dtype=bool)  # their draft slots
            front = dict(
                index=offset + best,
                token=jnp.take_along_axis(block_token, best, axis=1),
                score=best_score,
                feature=jnp.take_along_axis(g, owner[:, :, None], axis=1),
                seen=jnp.take_along_axis(front["seen"], owner[:, :, None], axis=1) | slot[None],
            )
        offset += k * k
    return select(
        root_token,
        jnp.concatenate(tokens, 1),
        jnp.concatenate(scores, 1),
        jnp.concatenate(parents, 1),
        jnp.concatenate(depths, 1),
        params,
    ), draft_kv


def select(root_token, tokens, scores, parents, depths, params: TreeParams) -> DraftTree:
    """Keep the total_tokens best candidates ([b, C] each; parents = candidate index, -1 = root),
    in topological order, behind the root."""
    b = tokens.shape[0]
    _, chosen = jax.lax.top_k(scores, params.total_tokens)
    chosen = jnp.sort(chosen, axis=1)  # candidate order = topological order
    place = jnp.zeros(tokens.shape, jnp.int32)  # candidate index -> node index (1..N) if chosen
    place = jax.vmap(lambda p, c: p.at[c].set(jnp.arange(1, c.shape[0] + 1, dtype=jnp.int32)))(
        place, chosen
    )
    parent_c = jnp.take_along_axis(parents, chosen, axis=1)
    parent = jnp.where(
        parent_c < 0, 0, jnp.take_along_axis(place, jnp.maximum(parent_c, 0), axis=1)
    )
    zero = jnp.zeros((b, 1), jnp.int32)
    parent = jnp.concatenate([zero, parent], 1)
    return DraftTree(
        tokens=jnp.concatenate([root_token[:, None], jnp.take_along_axis(tokens, chosen, 1)], 1),
        parent=parent,
        depth=jnp.concatenate([zero, jnp.take_along_axis(depths, chosen, 1)], 1),
        ancestors=ancestor_mask(parent, params.depth),
    )
