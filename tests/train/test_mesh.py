"""Multi-slice meshes: only the data axis crosses slices (andesvl_jax/sharding.py hybrid_device_grid)."""

import types

import numpy as np
import pytest

from andesvl_jax.sharding import hybrid_device_grid, make_mesh


def fake_devices(slices: int, per_slice: int, *, tpu: bool):
    """Device stand-ins: a TPU's slice is its slice_index; a GPU host's is its process."""
    out = []
    for s in range(slices):
        for i in range(per_slice):
            d = types.SimpleNamespace(
                id=s * per_slice + i, process_index=s, slice_index=0, platform="gpu"
            )
            if tpu:  # one host may drive several slices' chips
                d.slice_index, d.process_index, d.platform = s, 0, "tpu"
            out.append(d)
    return out[::-1]  # order must not matter


@pytest.mark.parametrize("tpu", [True, False])
def test_slices_split_only_the_data_axis(tpu):
    devices = fake_devices(2, 8, tpu=tpu)
    grid = hybrid_device_grid(devices, [4, 2, 2], slices=2)
    slice_of = np.vectorize(lambda d: d.slice_index if tpu else d.process_index)(grid)
    assert grid.shape == (4, 2, 2)
    # fsdp x tensor groups never leave a slice; the data axis walks slice 0 then slice 1
    assert (slice_of == slice_of[:, :1, :1]).all()
    np.testing.assert_array_equal(slice_of[:, 0, 0], [0, 0, 1, 1])
    assert sorted(d.id for d in grid.ravel()) == list(range(16))


def test_slice_errors_name_the_problem():
    devices = fake_devices(2, 4, tpu=False)
    with pytest.raises(ValueError, match="form 2 slice"):
        hybrid_device_grid(devices, [4, 1, 2], slices=4)
    with pytest.raises(ValueError, match="does not split over dcn_data=2"):
        hybrid_device_grid(devices, [1, 4, 2], slices=2)
    with pytest.raises(ValueError, match="slice 1 has 3 devices"):
        hybrid_device_grid(devices[1:], [4, 1, 2], slices=2)


def test_single_host_cannot_fake_two_slices():
    with pytest.raises(ValueError, match="dcn_data=2 but the devices form 1 slice"):
        make_mesh({"data": -1, "dcn_data": 2})
