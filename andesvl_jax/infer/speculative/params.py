"""The draft-tree shape of EAGLE-2 decoding and the checks a speculative request passes before
anything compiles."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TreeParams:
    """EAGLE-2's dynamic tree: each of `depth` draft steps expands the `top_k` best nodes of the
    previous depth (by cumulative draft log-probability) into `top_k` children each; the
    `total_tokens` best nodes overall are verified (plus the root). top_k=1 with
    total_tokens=depth is a chain (EAGLE-1 style)."""

    top_k: int = 10
    depth: int = 7
    total_tokens: int = 60

    @classmethod
    def chain(cls, depth: int) -> TreeParams:
        return cls(top_k=1, depth=depth, total_tokens=depth).validate()

    @property
    def candidates(self) -> int:
        """Nodes the draft proposes: top_k at depth 1, top_k^2 at each later depth."""
        return self.top_k + (self.depth - 1) * self.top_k**2

    @property
    def verified(self) -> int:
        """Tokens in the target's verification forward: the root + total_tokens."""
        return self.total_tokens + 1

    def validate(self) -> TreeParams:
        if self.depth < 1:
            raise ValueError(f"tree depth must be >= 1, got {self.depth}")
        if self.top_k < 1:
            raise ValueError(f"tree top_k must be >= 1, got {self.top_k}")
        if self.total_tokens < self.depth:
            raise ValueError(
                f"tree total_tokens {self.total_tokens} < depth {self.depth}: the tree could not "
                "hold one path of full depth"
            )
        if self.total_tokens > self.candidates:
            raise ValueError(
                f"tree total_tokens {self.total_tokens} > the {self.candidates} nodes a "
                f"top_k={self.top_k}, depth={self.depth} tree proposes"
            )
        return self


def check_sampling(sampling) -> None:
    """ValueError for sampling options the speculative path does not reproduce exactly."""
    if np.any(np.asarray(sampling.presence_penalty) != 0):
        raise ValueError(
            "speculative decoding does not support presence_penalty (the penalised distribution "
            "changes along each draft path); use presence_penalty=0 or plain decoding"
        )
