"""Fixtures for the kernel tests."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test id: each parametrisation draws its own random inputs,
    reproducibly (a failure re-runs with the same numbers)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
