"""Training EAGLE draft heads (stages `eagle` and `hass`) against a frozen AndesVL target.

The trained module is `DraftTrainee`: the target (frozen, stage trainable = ("draft",)) and the
`models.eagle.DraftHead`. Target features are computed online from the frozen target on the
stage's data (images encoded by the target, merged into the input embeddings the draft sees).

Loss per position i (draft input: embedding of x_{i+1} and feature f_i; it predicts f_{i+1}):
  * EAGLE: SmoothL1(g_i, f_{i+1}) (mean over features) + ce_weight x CE(p_{i+1}, q_i), p the
    target's next-token distribution at i + 1, q the draft's; uniform noise on the input features
    (amplitude `noise`, EAGLE's augmentation).
  * HASS adds harmonized objective distillation: topk_weight x -sum_{x in top-K of p} p(x) log q(x)
    (the target's ranking of its top K), and harmonized context alignment: `steps` unrolled draft
    steps, step s feeding the draft's own step-(s-1) outputs as the features of the last s - 1
    positions, with the matching attention mask (below); step s's loss weighs decay^(s-1)
    (EAGLE-3's training-time test uses 0.8).

Attention of step s (HASS): the query at position j sees step-1 keys at positions <= j - s + 1 and
the step-t key at position j - (s - t) for 1 < t <= s, within its packed segment: exactly the
context the draft has at decode time when it drafts its s-th token after position j - s + 1. The
keys of all steps sit in one [s x L] buffer that the draft layer's cached path writes step by step
and reads through a `TreeMask` (models/kv_cache.py).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.models.eagle import DraftConfig, DraftHead
from andesvl_jax.models.kv_cache import KVCache, TreeMask


@dataclasses.dataclass(frozen=True)
class DraftTraining:
    steps: int = 1  # unrolled draft steps (HASS context alignment: > 1)
    ce_weight: float = 0.1
    topk: int = 10  # HASS top-K distillation
    topk_weight: float = 0.0
    noise: float = 0.2  # uniform feature noise amplitude (EAGLE)
    decay: float = 1.0  # step s weighs decay^(s-1)
    # train only where the data's loss mask is on (answers); False: every position of a sample
    # (the target's distribution is the teacher everywhere, prompts included)
    answer_only: bool = False

    def validate(self) -> DraftTraining:
        if self.steps < 1:
            raise ValueError(f"draft.steps must be >= 1, got {self.steps}")
        if self.topk < 1:
            raise ValueError(f"draft.topk must be >= 1, got {self.topk}")
        for name in ("ce_weight", "topk_weight", "noise", "decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"draft.{name} must be >= 0, got {getattr(self, name)}")
        return self


# stage objective -> its defaults (run config `draft` entries override them)
RECIPES = {
    "eagle": DraftTraining(),
    "hass": DraftTraining(steps=3, topk=10, topk_weight=1.0),
}


class DraftTrainee(nnx.Module):
    """What the eagle / hass stages train: `draft` learns, `target` stays frozen."""

    def __init__(self, target: AndesVL, draft: DraftHead):
        self.target, self.draft, self.cfg = target, draft, target.cfg


def step_mask(segment_ids: jax.Array, s: int, steps: int) -> jax.Array:
    """[b, L, steps * L] bool: what step s's queries see of the steps' key blocks (module doc)."""
    length = segment_ids.shape[1]
    same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, :, None] != 0)
    j = jnp.arange(length)[:, None]
    jp = jnp.arange(length)[None, :]
    blocks = []
    for t in range(1, steps + 1):
        if t == 1:
            rule = jp <= j - (s - 1)
        elif t <= s:
            rule = jp == j - (s - t)
        else:
            rule = jnp.zeros((length, length), bool)
        blocks.append(same & rule[None])
    return jnp.concatenate(blocks, axis=-1)


def unrolled(draft: DraftHead, embeds, feats, positions, segment_ids, steps: int) -> list:
    """The draft's outputs [b, L, d] of each step (step 1 on the given features)."""
    b, length, _ = feats.shape
    cfg = dataclasses.replace(draft.cfg.text, num_layers=1)
    buf = KVCache.init(cfg, b, steps * length, feats.dtype, stacked=False)
    kv = (buf.k[0], buf.v[0])
    outs, feat = [], feats
    for s in range(1, steps + 1):
        tree = TreeMask(jnp.zeros((b,), jnp.int32), step_mask(segment_ids, s, steps))
        start = jnp.full((b,), (s - 1) * length, jnp.int32)
        g, kv = draft(embeds, feat, positions, segment_ids, kv, start, tree)
        outs.append(g)
        feat = jnp.concatenate([feats[:, :1], g[:, :-1]], axis=1)  # position i takes g_{i-1}
    return outs


def draft_loss(recipe: DraftTraining):
    """(loss, summarise) of the `objectives.Objective` that trains a `DraftTrainee`."""
    recipe.validate()

    def loss(model: DraftTrainee, reference, batch, extra):
        target, draft = model.target, model.draft
        seg = batch.segment_ids
        embeds = target.embed(batch.input_ids, batch.images)
        feats, _ = target.llm(embeds, batch.positions, seg)
        feats = jax.lax.stop_gradient(feats)
        embeds = jax.lax.stop_gradient(embeds)
        p = jax.lax.stop_gradient(jax.nn.softmax(target.llm.logits(feats), axis=-1))
        # pairs (embedding of x_{i+1}, f_i) -> f_{i+1}; valid where i + 1 is in i's segment
        nxt = lambda a: jnp.concatenate([a[:, 1:], jnp.zeros_like(a[:, :1])], axis=1)  # noqa: E731
        pair = (seg != 0) & (nxt(seg) == seg)
        if recipe.answer_only:
            pair = pair & (nxt(batch.loss_mask) > 0)
        mask = pair.astype(jnp.float32)
        key = jax.random.fold_in(jax.random.PRNGKey(0), jnp.sum(batch.input_ids))
        noise = (jax.random.uniform(key, feats.shape) - 0.5) * recipe.noise
        outs = unrolled(draft, nxt(embeds), feats + noise, batch.positions, seg, recipe.steps)
        f_next, p_next = nxt(feats), nxt(p)
        total, stats = 0.0, {}
        for s, g in enumerate(outs, start=1):
            # step s needs s - 1 earlier draft positions in the segment
            valid = mask * (jnp.roll(seg, s - 1, axis=1) == seg) * (batch.positions >= s - 1)
            diff = jnp.abs(g - f_next)
            smooth = jnp.where(diff < 1, 0.5 * diff**2, diff - 0.5).mean(-1)
            logq = jax.nn.log_softmax(draft.logits(target.llm, g), axis=-1)
            ce = -jnp.sum(p_next * logq, axis=-1)
            top_p, top_i = jax.lax.top_k(p_next, recipe.topk)
            topk = -jnp.sum(top_p * jnp.take_along_axis(logq, top_i, axis=-1), axis=-1)
            per = smooth + recipe.ce_weight * ce + recipe.topk_weight * topk
            weight = recipe.decay ** (s - 1)
            total = total + weight * jnp.sum(per * valid)
            hit = (jnp.argmax(logq, -1) == jnp.argmax(p_next, -1)).astype(jnp.float32)
            stats[f"correct_{s}"] = jnp.sum(hit * valid)
            stats[f"count_{s}"] = jnp.sum(valid)
        stats["normaliser"] = jnp.sum(mask)
        return total, stats

    def summarise(s):
        return {
            f"draft_accuracy_{i}": s[f"correct_{i}"] / jnp.maximum(s[f"count_{i}"], 1)
            for i in range(1, recipe.steps + 1)
        }

    return loss, summarise


def recipe_of(stage_objective: str, section) -> DraftTraining:
    """The stage's recipe with the run config's `draft` section entries applied."""
    names = {f.name for f in dataclasses.fields(DraftTraining)}
    chosen = {k: v for k, v in dict(section or {}).items() if k in names and v is not None}
    return dataclasses.replace(RECIPES[stage_objective], **chosen).validate()


def trainee(target: AndesVL, section, seed: int) -> DraftTrainee:
    """A fresh draft head (config `draft.draft_vocab`, full vocabulary by default) on `target`."""
    vocab = int(dict(section or {}).get("draft_vocab", 0) or 0)
    if vocab:
        raise ValueError(
            "draft.draft_vocab: training a reduced-vocabulary head is not supported yet "
            "(the token-frequency d2t map is not built by the stage); use 0"
        )
    cfg = DraftConfig.for_target(target.cfg.text)
    return DraftTrainee(target, DraftHead(cfg, rngs=nnx.Rngs(seed)))


def trainee_state(config, model_cfg, graphdef, full, mesh, rules):
    """The eagle / hass stages' model: the starting AndesVL — or the deployed integer model of
    `draft.deployed` — frozen by the stage, with a fresh draft head -> (graphdef, full State),
    sharded by the logical rules."""
    from andesvl_jax.sharding import state_shardings
    from andesvl_jax.train.adapter_stage import deployed_base

    section = config.get("draft") or {}
    deployed = section.get("deployed", "")
    target = deployed_base(deployed, model_cfg) if deployed else nnx.merge(graphdef, full)
    model = trainee(target, section, config.seed)
    graphdef, state = nnx.split(model)
    return graphdef, jax.device_put(state, state_shardings(state, mesh, rules))
