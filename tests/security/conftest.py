"""Writes the fuzz suite's outcome counts (fuzzlib.OUTCOMES) to $ANDESVL_FUZZ_SUMMARY at the end."""

from __future__ import annotations

import collections
import json
import os
import pathlib

from fuzzlib import OUTCOMES


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("ANDESVL_FUZZ_SUMMARY")
    if out and OUTCOMES:
        path = pathlib.Path(out)
        previous = json.loads(path.read_text()) if path.is_file() else {}
        for reader, counts in OUTCOMES.items():
            merged = collections.Counter(previous.get(reader, {}))
            merged.update(counts)
            previous[reader] = dict(sorted(merged.items()))
        path.write_text(json.dumps(dict(sorted(previous.items())), indent=1) + "\n")
