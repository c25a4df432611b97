"""Bad-data policy: a clear error (where + what) or an explicit, counted skip. Never a silent drop.

Every reader and transform reports a problem by raising `DataError(origin, reason, detail)`;
`origin` says where (``file.jsonl:17``, ``synthetic:ocr:42``), `reason` is a short stable key used
for counting (``corrupt_image``, ``too_many_image_tags`` ...) and `image` the index of the image at
fault when one is (set by `at_image`, so tools report it without parsing `origin`). The pipeline's
`on_error` policy (a registry, see ON_ERROR_POLICIES) then decides: ``raise`` re-raises, ``skip``
turns the sample into a `Skipped` marker that the packer counts in `SkipStats`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any


class DataError(ValueError):
    """A specific problem with one sample: where it came from, a reason key and what was wrong."""

    def __init__(self, origin: str, reason: str, detail: str, image: int | None = None):
        self.origin, self.reason, self.detail, self.image = origin, reason, detail, image
        super().__init__(f"{origin}: {reason}: {detail}")

    def __reduce__(self):  # keeps the fields across multiprocessing pickling
        return (DataError, (self.origin, self.reason, self.detail, self.image))


@contextlib.contextmanager
def at_image(index: int) -> Iterator[None]:
    """Tag a DataError raised inside with the sample's image index (unless already tagged)."""
    try:
        yield
    except DataError as err:
        if err.image is None:
            err.image = index
        raise


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Stand-in for a sample dropped under on_error='skip'; the packer counts it."""

    origin: str
    reason: str
    detail: str = ""


class SkipStats(collections.Counter):
    """Counts per reason (plus 'ok'); JSON-friendly so it travels in iterator checkpoints."""

    def add_skip(self, skipped: Skipped) -> None:
        self[f"skipped/{skipped.reason}"] += 1

    def to_json(self) -> dict[str, int]:
        return dict(sorted(self.items()))

    @classmethod
    def from_json(cls, d: dict[str, int] | None) -> SkipStats:
        return cls(d or {})


def _raise(err: DataError) -> Any:
    raise err


def _skip(err: DataError) -> Skipped:
    return Skipped(err.origin, err.reason, err.detail)


ON_ERROR_POLICIES: dict[str, Callable[[DataError], Any]] = {"raise": _raise, "skip": _skip}


def apply_policy(on_error: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Run `fn`; on a DataError apply the named policy (raise, or return a Skipped marker)."""
    if on_error not in ON_ERROR_POLICIES:
        raise ValueError(
            f"on_error={on_error!r} unknown; expected one of {sorted(ON_ERROR_POLICIES)}"
        )
    try:
        return fn(*args, **kwargs)
    except DataError as err:
        return ON_ERROR_POLICIES[on_error](err)
