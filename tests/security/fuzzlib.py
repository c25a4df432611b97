"""Shared machinery of the fuzz suite (docs/security.md): outcome counting, the per-case contract,
byte mutations and the hypothesis profile.

Every hostile case goes through `run_case(reader, fn, where=...)`, which enforces the contract of
issue 22: `fn` either returns (accepted; `fixed=True` when the reader had to repair the input, e.g.
convert CMYK or skip a torn line) or raises one of the project's own error types whose message names
the file (`where`); anything else — another exception type, an error that does not say where, a case
running past CASE_TIMEOUT_S — is a crash and fails the test. Counts per reader are written as JSON
to $ANDESVL_FUZZ_SUMMARY at the end of the session; $ANDESVL_FUZZ_SCALE multiplies every test's
number of examples (benchmarks/fuzz_report.py runs both).
"""

from __future__ import annotations

import collections
import os
import signal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from andesvl_jax.convert.hf_config import ConfigError
from andesvl_jax.convert.safetensors_io import CheckpointError
from andesvl_jax.data.errors import DataError
from andesvl_jax.data.tokenizer import TokenizerError

SCALE = float(os.environ.get("ANDESVL_FUZZ_SCALE", "1"))
CASE_TIMEOUT_S = 20  # a hang is a crash; the slowest legitimate case takes well under a second
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
# The project's own error types: a hostile input may raise these (their messages say where).
PROJECT_ERRORS = (DataError, CheckpointError, ConfigError, TokenizerError)


def examples(n: int) -> settings:
    """Seeded, bounded hypothesis settings for a test of `n` examples (times ANDESVL_FUZZ_SCALE)."""
    return settings(
        max_examples=max(1, int(n * SCALE)),
        derandomize=True,  # the same cases on every run and machine
        database=None,
        deadline=None,  # CASE_TIMEOUT_S guards hangs; deadlines would flake on 2 busy cores
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout(f"case ran past {CASE_TIMEOUT_S} s")


def run_case(reader: str, fn, *, where: str | None, errors=PROJECT_ERRORS, fixed=False):
    """Run one hostile case under the contract; count its outcome under `reader`.

    where: text the error message must contain (the file name, usually); None = not checked.
    fixed: the input is known to need a repair, so acceptance counts as 'accepted_with_fix'.
    Returns fn's result, or the error raised.
    """
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        result = fn()
    except errors as e:
        if where is not None and where not in str(e):
            OUTCOMES[reader]["crash"] += 1
            pytest.fail(f"{reader}: error does not name {where!r}: {type(e).__name__}: {e}")
        OUTCOMES[reader]["rejected"] += 1
        return e
    except CaseTimeout:
        OUTCOMES[reader]["crash"] += 1
        pytest.fail(f"{reader}: hang: case ran past {CASE_TIMEOUT_S} s")
    except Exception as e:  # noqa: BLE001 - the point: anything else is a crash
        OUTCOMES[reader]["crash"] += 1
        raise AssertionError(f"{reader}: crash: {type(e).__name__}: {e}") from e
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    OUTCOMES[reader]["accepted_with_fix" if fixed else "accepted"] += 1
    return result


def count(reader: str, outcome: str, n: int = 1) -> None:
    """Count outcomes decided by the test itself (e.g. records skipped and reported in a scan)."""
    OUTCOMES[reader][outcome] += n


@st.composite
def mutated(draw, seed: bytes, max_ops: int = 4) -> bytes:
    """`seed` after 1..max_ops of: truncate, flip bytes, overwrite a run, insert, duplicate, delete."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "dup", "delete"]))
        n = len(data)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == "truncate":
            del data[pos:]
        elif op == "flip" and n:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "dup" and n:
            end = draw(st.integers(pos, min(n, pos + 64)))
            data[pos:pos] = data[pos:end]
        elif op == "delete" and n:
            del data[pos : draw(st.integers(pos, min(n, pos + 64)))]
    return bytes(data)
