"""A weighted mixture of datasets as one random-access source (`data.sources` in a run config).

Index i of the mixture is a fixed (source, record) pair: a seeded draw picks each position's source
with probability proportional to its weight, and each source is read in order, starting over when it
runs out (a small, up-weighted source is seen for several epochs). The table is deterministic in the
seed, so the grain pipeline's shuffling, sharding over hosts and checkpointed cursor work unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from andesvl_jax.data.formats import open_dataset
from andesvl_jax.data.sample import Sample

SOURCE_KEYS = ("format", "path", "image_root", "weight")


class MixtureSource:
    """sources: name -> random-access source of Samples; weights: name -> relative weight (> 0).

    size: length of the mixture (default: the sources' total length). Each Sample's meta gets
    `source` = its dataset's name.
    """

    def __init__(
        self,
        sources: Mapping[str, object],
        weights: Mapping[str, float],
        *,
        size: int | None = None,
        seed: int = 0,
    ):
        if not sources:
            raise ValueError("a data mixture needs at least one source")
        if set(weights) != set(sources):
            raise ValueError(f"weights for {sorted(weights)} but sources {sorted(sources)}")
        self.names = sorted(sources)
        self.sources = [sources[n] for n in self.names]
        for name, src in zip(self.names, self.sources, strict=True):
            if float(weights[name]) <= 0:
                raise ValueError(f"data source {name!r}: weight must be > 0, got {weights[name]}")
            if len(src) == 0:
                raise ValueError(f"data source {name!r} is empty")
        p = np.array([float(weights[n]) for n in self.names])
        self.size = int(size or sum(len(s) for s in self.sources))
        self.which = np.random.default_rng(seed).choice(len(p), self.size, p=p / p.sum())
        self.offset = np.zeros(self.size, np.int64)  # position within its own source's stream
        for k in range(len(p)):
            at = np.flatnonzero(self.which == k)
            self.offset[at] = np.arange(len(at)) % len(self.sources[k])

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        k = int(self.which[index])
        sample = self.sources[k][int(self.offset[index])]
        return dataclasses.replace(sample, meta={**sample.meta, "source": self.names[k]})

    def shares(self) -> dict[str, float]:
        """Fraction of the mixture each source makes up (what the weights asked for, realised)."""
        counts = np.bincount(self.which, minlength=len(self.names))
        return {n: float(c) / self.size for n, c in zip(self.names, counts, strict=True)}


def open_mixture(spec: Mapping[str, Mapping], *, size: int | None = None, seed: int = 0):
    """A MixtureSource from config entries name -> {format, path, image_root?, weight?}."""
    sources, weights = {}, {}
    for name, entry in spec.items():
        entry = dict(entry)
        unknown = sorted(set(entry) - set(SOURCE_KEYS))
        if unknown or "format" not in entry or "path" not in entry:
            raise ValueError(
                f"data.sources.{name}: needs format and path, may set image_root and weight; "
                f"got keys {sorted(entry)}"
            )
        sources[name] = open_dataset(
            entry["format"], entry["path"], image_root=entry.get("image_root") or None
        )
        weights[name] = entry.get("weight", 1.0)
    return MixtureSource(sources, weights, size=size, seed=seed)
