"""Grain pipelines per training stage: source -> shard -> shuffle -> encode -> pack -> prefetch.

    ds = make_dataset(source, DataConfig(stage="sft", batch_size=8), tokenizer)
    it = iter(ds)                      # grain DatasetIterator yielding TrainBatch
    batch = next(it)
    state = it.get_state()             # small JSON-able dict; save it with the model checkpoint
    it2 = iter(ds); it2.set_state(state)   # continues with exactly the batch `it` yields next

Every step is deterministic given `seed`: the shuffle is a per-epoch index permutation, the
per-sample randomness (the stage-2 image move) comes from grain's per-index rng, and the packer's
state is indices (pack_dataset.py). Multi-host: each process reads its own slice
(`source[process_index::process_count]`) and yields its local rows.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import grain
import jax
import numpy as np

from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.data.encode import EncodeSpec, SampleEncoder
from andesvl_jax.data.errors import SkipStats, apply_policy
from andesvl_jax.data.interleave import move_images_first
from andesvl_jax.data.pack_dataset import PackedBatchDataset, PackSpec
from andesvl_jax.data.preference import EncodePair, PairBatchDataset
from andesvl_jax.data.preprocess import ImageSpec
from andesvl_jax.data.tokenizer import TextTokenizer


@dataclasses.dataclass(frozen=True)
class StageDefaults:
    """What a stage fixes about its data (DESIGN.md section 6); DataConfig fields override."""

    loss_mask: str
    image_max_size: int
    max_patches: int
    max_tokens: int
    mixture: str  # the synthetic mixture used when no dataset is given
    interleave_prob: float = 0.0
    text_fill: bool = False  # top rows' token budgets up with text-only samples (PackSpec)
    pairs: bool = False  # preference pairs, two rows each (data/preference.py), not packed


DATA_STAGES: dict[str, StageDefaults] = {
    "align_896": StageDefaults("answer_only", 896, 4096, 2048, "align"),
    "align_1792": StageDefaults("answer_only", 1792, 16384, 8192, "align"),
    "joint": StageDefaults(
        "all_text", 1792, 16384, 8192, "joint", interleave_prob=0.5, text_fill=True
    ),
    "multitask": StageDefaults("answer_only", 1792, 16384, 32768, "multitask", text_fill=True),
    "sft": StageDefaults("answer_only", 1792, 16384, 8192, "multitask", text_fill=True),
    "mpo": StageDefaults("answer_only", 1792, 16384, 8192, "mpo", pairs=True),
    "grpo": StageDefaults("none", 1792, 16384, 8192, "grpo"),
    "demo": StageDefaults("answer_only", 112, 256, 256, "demo"),
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """One stage's data pipeline. None fields take the stage default (DATA_STAGES)."""

    stage: str = "sft"
    batch_size: int = 8
    max_tokens: int | None = None
    max_patches: int | None = None
    image_max_size: int | None = None
    loss_mask: str | None = None
    interleave_prob: float | None = None
    flavour: str = "aimv2"
    patch_size: int = 14
    pixel_shuffle: bool = True
    thinking: bool | None = None
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None  # None = repeat forever (training)
    on_error: str = "raise"  # 'raise' or 'skip' (errors.ON_ERROR_POLICIES)
    worker_count: int = 0  # > 0: multiprocess prefetch
    worker_buffer_size: int = 2
    max_misses: int = 16
    text_fill: bool | None = None  # None = the stage default
    text_lookahead: int = 256

    @classmethod
    def for_model(cls, model_config, **kw) -> DataConfig:
        """Vision flavour, patch size and pixel shuffle taken from an AndesVLConfig."""
        return cls(
            flavour=model_config.vision.flavour,
            patch_size=model_config.vision.patch_size,
            pixel_shuffle=model_config.pixel_shuffle,
            **kw,
        )

    @property
    def defaults(self) -> StageDefaults:
        if self.stage not in DATA_STAGES:
            raise KeyError(f"data stage {self.stage!r} unknown; expected one of {sorted(DATA_STAGES)}")
        return DATA_STAGES[self.stage]

    def resolved(self, name: str):
        v = getattr(self, name)
        return getattr(self.defaults, name) if v is None else v

    def encode_spec(self) -> EncodeSpec:
        image = ImageSpec(
            flavour=self.flavour,
            patch_size=self.patch_size,
            max_size=self.resolved("image_max_size"),
        )
        return EncodeSpec(
            image=image,
            max_tokens=self.resolved("max_tokens"),
            max_patches=self.resolved("max_patches"),
            loss_mask=self.resolved("loss_mask"),
            pixel_shuffle=self.pixel_shuffle,
            thinking=self.thinking,
        )


class LoadAndEncode:
    """grain random_map fn: stream index -> Example (or Skipped under on_error='skip')."""

    def __init__(self, source, encoder: SampleEncoder, on_error: str, interleave_prob: float):
        self.source, self.encoder, self.on_error, self.interleave_prob = (
            source,
            encoder,
            on_error,
            interleave_prob,
        )

    def _load_encode(self, index: int, rng: np.random.Generator):
        sample = self.source[index]
        if self.interleave_prob > 0:
            sample = move_images_first(sample, rng, self.interleave_prob)
        return self.encoder(sample)

    def __call__(self, index: int, rng: np.random.Generator):
        return apply_policy(self.on_error, self._load_encode, int(index), rng)


def _indices(source, cfg: DataConfig, process_index, process_count) -> grain.MapDataset:
    """This process's slice of the source, shuffled."""
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    ds = grain.MapDataset.range(len(source))[pi::pc]
    if len(ds) == 0:
        raise ValueError(f"process {pi} of {pc} gets no samples from a source of {len(source)}")
    return ds.shuffle(seed=shuffle_seed(cfg.seed)) if cfg.shuffle else ds


def shuffle_seed(seed: int) -> int:
    """The grain shuffle seed of run seed `seed`: a hash, not `seed` itself.

    grain shuffles epoch e with seed + e, so with the run seed as is, seed s + 1 would replay
    seed s's order one epoch later (a seed ablation comparing the same data order).
    """
    return int(np.random.SeedSequence([seed, 0x5EED]).generate_state(1)[0])


def example_dataset(
    source,
    cfg: DataConfig,
    tokenizer: TextTokenizer,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
    """Random-access MapDataset of Examples/Skipped for this process.

    Sharded, shuffled and encoded.
    """
    encoder = SampleEncoder(tokenizer, cfg.encode_spec())
    fn = LoadAndEncode(source, encoder, cfg.on_error, cfg.resolved("interleave_prob"))
    return _indices(source, cfg, process_index, process_count).random_map(fn, seed=cfg.seed + 1)


def make_dataset(
    source,
    cfg: DataConfig,
    tokenizer: TextTokenizer | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """The stage's packed-batch IterDataset (iterate it for TrainBatch; iterators checkpoint)."""
    tokenizer = tokenizer or TextTokenizer.default()
    if cfg.defaults.pairs:
        if cfg.batch_size % 2:
            raise ValueError(f"a preference batch holds pairs: batch_size {cfg.batch_size} is odd")
        encoder = SampleEncoder(tokenizer, cfg.encode_spec())
        pairs = _indices(source, cfg, process_index, process_count).map(
            EncodePair(source, encoder, cfg.on_error)
        )
        ds = PairBatchDataset(
            pairs,
            cfg.batch_size // 2,
            cfg.resolved("max_tokens"),
            cfg.resolved("max_patches"),
            tokenizer.special_tokens,
            cfg.patch_size,
        )
    else:
        examples = example_dataset(source, cfg, tokenizer, process_index, process_count)
        spec = PackSpec(
            cfg.batch_size,
            cfg.resolved("max_tokens"),
            cfg.resolved("max_patches"),
            cfg.patch_size,
            tokenizer.special_tokens,
            max_misses=cfg.max_misses,
            text_fill=cfg.resolved("text_fill"),
            text_lookahead=cfg.text_lookahead,
        )
        ds = PackedBatchDataset(examples, spec, cfg.num_epochs)
    if cfg.worker_count > 0:
        _ensure_absl_flags_parsed()
        ds = ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=cfg.worker_count, per_worker_buffer_size=cfg.worker_buffer_size
            )
        )
    return ds


def _ensure_absl_flags_parsed() -> None:
    # grain's multiprocess prefetch reads absl flags; outside an absl app nobody parsed them.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def synthetic_dataset(
    cfg: DataConfig,
    tokenizer: TextTokenizer | None = None,
    size: int = 100_000,
    split: str = "train",
    ctx=None,
    **kw,
) -> grain.IterDataset:
    """make_dataset over the embedded synthetic corpus with the stage's default mixture."""
    from andesvl_jax.data.synthetic import SyntheticSource, TaskContext

    source = SyntheticSource(
        cfg.defaults.mixture, size=size, seed=cfg.seed, split=split, ctx=ctx or TaskContext()
    )
    return make_dataset(source, cfg, tokenizer, **kw)


def pipeline_stats(state: dict[str, Any]) -> dict[str, float]:
    """Counters (ok, skipped/<reason>, downscaled_images, fill) from an iterator state.

    Summed over workers.
    """
    total = SkipStats()

    def walk(node):
        if isinstance(node, dict):
            if "stats" in node and "cursor" in node:
                total.update(node["stats"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v)
        elif isinstance(node, str | bytes) and node[:1] in ("{", b"{"):
            try:
                walk(json.loads(node))
            except ValueError:
                pass

    walk(state)
    out: dict[str, float] = dict(total)
    if total.get("tokens_capacity"):
        out["token_fill"] = total["tokens_used"] / total["tokens_capacity"]
        out["patch_fill"] = total["patches_used"] / total["patches_capacity"]
    return out


def save_iterator_state(iterator, path: str | pathlib.Path) -> None:
    """Write the iterator's state as JSON, atomically (a kill leaves the previous state).

    (grain.checkpoint handlers do the same with orbax.)
    """
    atomic_write_text(path, json.dumps(iterator.get_state(), default=_jsonable))


def restore_iterator_state(iterator, path: str | pathlib.Path) -> None:
    iterator.set_state(json.loads(pathlib.Path(path).read_text()))


def _jsonable(o):
    if isinstance(o, bytes):
        return o.decode()
    if isinstance(o, np.integer):
        return int(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
