"""The call reward model (Octopus v3's RL stage): an AndesVL with a scalar head that scores
(image, request, call), trained on correct vs perturbed calls with the Bradley-Terry loss
-log sigmoid(r(correct) - r(perturbed)).

The score is a linear head over the final hidden state at the last token of the chat sequence
(`<|im_end|>` closing the assistant's call). Perturbations (`perturb`): another function with
valid arguments, one argument changed to another valid value, a text answer instead of the call, or
a call instead of a text answer. The model starts from the functional run's weights.
Output directory: a workdir of the backbone (loadable like any run) + `head.npz` + `reward.json`.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from andesvl_jax.agent.calls import FunctionCall, NoCall, format_call
from andesvl_jax.agent.corpus import REFUSAL, registry
from andesvl_jax.agent.evaluate import EVAL_CONTEXT
from andesvl_jax.agent.grow import save_model_workdir
from andesvl_jax.convert.workdir import load_run_config, run_tokenizer, trained_model
from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.data.encode import answer_only_encoder
from andesvl_jax.data.packing import assemble_batch
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.synthetic import SyntheticSource
from andesvl_jax.models.layers import Linear

MAX_TOKENS, MAX_PATCHES, IMAGE_MAX = 192, 96, 112
HEAD_FILE, RECORD_FILE = "head.npz", "reward.json"


class RewardModel(nnx.Module):
    """backbone: an AndesVL; head: Linear(d, 1) on the last token's final hidden state."""

    def __init__(self, backbone, *, rngs: nnx.Rngs):
        self.backbone = backbone
        self.head = Linear(backbone.cfg.text.hidden_size, 1, axes=("embed", None), rngs=rngs)

    def __call__(self, batch) -> jax.Array:
        """scores [b] of one sequence per row (right-padded)."""
        hidden, _ = self.backbone(
            batch.input_ids,
            batch.images,
            positions=batch.positions,
            segment_ids=batch.segment_ids,
            return_hidden=True,
        )
        last = jnp.sum(batch.segment_ids > 0, axis=1) - 1
        h = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
        return self.head(h.astype(jnp.float32))[:, 0]


def _random_value(spec, rng, avoid=None):
    for _ in range(50):
        if spec.enum is not None:
            v = spec.enum[int(rng.integers(len(spec.enum)))]
        elif spec.type == "integer":
            v = int(rng.integers(spec.minimum or 0, (spec.maximum or 9) + 1))
        elif spec.type == "boolean":
            v = bool(rng.integers(2))
        else:
            v = str(int(rng.integers(1000, 10000))) if spec.format else "blue square"
        if v != avoid:
            return v
    return v


def perturb(call: dict, rng, language: str = "en") -> FunctionCall | NoCall:
    """A wrong answer for the true call (JSON): another function, one argument changed, or the
    wrong kind of answer (text for a call, a call for a text request)."""
    reg = registry()
    if call["function"] is None:
        f = reg.functions[int(rng.integers(len(reg)))]
        return FunctionCall(f.name, {a.name: _random_value(a, rng) for a in f.arguments})
    kind = int(rng.integers(3))
    if kind == 0:
        return NoCall(REFUSAL[language])
    if kind == 1:
        others = [f for f in reg.functions if f.name != call["function"]]
        f = others[int(rng.integers(len(others)))]
        return FunctionCall(f.name, {a.name: _random_value(a, rng) for a in f.arguments})
    spec = reg.get(call["function"])
    args = dict(call["arguments"])
    a = spec.arguments[int(rng.integers(len(spec.arguments)))]
    args[a.name] = _random_value(a, rng, avoid=args[a.name])
    return FunctionCall(call["function"], args)


def scored_sample(image, request: str, answer: str) -> Sample:
    return Sample(
        [Message("user", f"<image>\n{request}"), Message("assistant", answer)],
        [image],
        origin="reward",
    )


class RewardScorer:
    """A trained reward model on the host: scores completions (probability the call is right)."""

    def __init__(self, model: RewardModel, tok):
        self.model, self.tok = model, tok
        self.encoder = answer_only_encoder(
            model.backbone.cfg,
            tok,
            image_max_size=IMAGE_MAX,
            max_tokens=MAX_TOKENS,
            max_patches=MAX_PATCHES,
        )
        self.graphdef, self.state = nnx.split(model)

    def batch(self, samples):
        rows = [[self.encoder(s)] for s in samples]
        return assemble_batch(
            rows,
            MAX_TOKENS,
            MAX_PATCHES,
            self.tok.special_tokens,
            self.model.backbone.cfg.vision.patch_size,
        )

    def scores(self, samples) -> np.ndarray:
        return np.asarray(_scores(self.graphdef, self.state, self.batch(samples)))

    def score_one(self, image, request: str, completion: str) -> float:
        return float(jax.nn.sigmoid(self.scores([scored_sample(image, request, completion)])[0]))

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> RewardScorer:
        directory = pathlib.Path(directory)
        config = load_run_config(directory)
        backbone = trained_model(config, directory)
        model = RewardModel(backbone, rngs=nnx.Rngs(0))
        head = np.load(directory / HEAD_FILE)
        model.head.kernel[...] = jnp.asarray(head["kernel"])
        return cls(model, run_tokenizer(config))


@functools.partial(jax.jit, static_argnums=0)
def _scores(graphdef, state, batch):
    return nnx.merge(graphdef, state)(batch)


def pair_samples(source, index: int, rng):
    """(correct, perturbed) samples of corpus sample `index`."""
    s = source[index]
    request, image = s.meta["request"], s.images[0]
    wrong = format_call(perturb(s.meta["call"], rng, s.meta["language"]), registry())
    return scored_sample(image, request, s.meta["answer"]), scored_sample(image, request, wrong)


def _pairs_batch(scorer, source, indices, rng):
    samples = []
    for i in indices:
        samples += list(pair_samples(source, int(i), rng))
    return scorer.batch(samples)  # rows 2k / 2k+1 = correct / perturbed


def pairwise_accuracy(scorer, source, n: int, seed: int, batch_pairs: int = 16) -> float:
    rng = np.random.default_rng(seed)
    correct = 0
    for start in range(0, n, batch_pairs):
        idx = range(start, min(n, start + batch_pairs))
        r = np.asarray(
            _scores(scorer.graphdef, scorer.state, _pairs_batch(scorer, source, idx, rng))
        )
        correct += int(np.sum(r[0::2] > r[1::2]))
    return correct / n


def train_reward_model(
    checkpoint,
    out,
    *,
    steps: int = 200,
    pairs: int = 16,
    lr: float = 5e-4,
    seed: int = 0,
    eval_pairs: int = 200,
) -> dict:
    """Train the reward model from the functional run in `checkpoint`; write it to `out`."""
    config = load_run_config(checkpoint)
    tok = run_tokenizer(config)
    model = RewardModel(trained_model(config, checkpoint), rngs=nnx.Rngs(seed))
    scorer = RewardScorer(model, tok)
    train = SyntheticSource(
        {"agent_train": 1.0}, size=10**6, seed=seed + 7, split="train", ctx=EVAL_CONTEXT
    )
    heldout = SyntheticSource(
        {"agent_heldout": 1.0}, size=eval_pairs, seed=seed, split="eval", ctx=EVAL_CONTEXT
    )
    graphdef, params = nnx.split(model)
    optimizer = optax.adamw(optax.cosine_decay_schedule(lr, steps, 0.1), weight_decay=0.0)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        def loss_fn(p):
            r = nnx.merge(graphdef, p)(batch)
            margin = r[0::2] - r[1::2]
            return -jnp.mean(jax.nn.log_sigmoid(margin)), jnp.mean(margin > 0)

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    before = pairwise_accuracy(scorer, heldout, eval_pairs, seed)
    rng = np.random.default_rng(seed)
    t0, log = time.perf_counter(), []
    for k in range(steps):
        batch = _pairs_batch(scorer, train, range(k * pairs, (k + 1) * pairs), rng)
        params, opt_state, loss, acc = step(params, opt_state, batch)
        if (k + 1) % 20 == 0 or k + 1 == steps:
            log.append({"step": k + 1, "loss": float(loss), "pair_accuracy": float(acc)})
    model = nnx.merge(graphdef, params)
    scorer = RewardScorer(model, tok)
    after = pairwise_accuracy(scorer, heldout, eval_pairs, seed)
    out = pathlib.Path(out)
    save_model_workdir(model.backbone, config, tok, out)
    np.savez(out / HEAD_FILE, kernel=np.asarray(model.head.kernel[...]))
    summary = {
        "steps": steps,
        "pairs_per_step": pairs,
        "train_s": time.perf_counter() - t0,
        "heldout_pair_accuracy_before": before,
        "heldout_pair_accuracy_after": after,
        "log": log,
    }
    atomic_write_text(out / RECORD_FILE, json.dumps(summary, indent=2))
    return summary
