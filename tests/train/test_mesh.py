"""Device meshes (andesvl_jax/sharding.py device_grid over jax's mesh_utils): only the data axis
crosses slices, and a TPU slice's block follows its physical topology."""

import itertools
import types

import numpy as np
import pytest

from andesvl_jax.sharding import device_grid, make_mesh

# ids scrambled against the chips' coordinates, as a host's enumeration may be
SCRAMBLED = [5, 0, 3, 6, 1, 7, 2, 4]


def fake_devices(slices: int, per_slice: int, *, tpu: bool):
    """Device stand-ins: a TPU's slice is its slice_index; a GPU host's is its process. TPU chips
    of a slice sit on a 2x2x2 cuboid with ids that do not follow their coordinates."""
    out = []
    for s in range(slices):
        coords = itertools.product(range(2), repeat=3)
        for i, xyz in zip(range(per_slice), coords, strict=False):
            d = types.SimpleNamespace(
                id=s * per_slice + i,
                process_index=s,
                slice_index=0,
                platform="gpu",
                device_kind="NVIDIA H100 80GB HBM3",
            )
            if tpu:  # one host may drive several slices' chips
                d.slice_index, d.process_index, d.platform = s, 0, "tpu"
                d.device_kind, d.coords, d.core_on_chip = "TPU v4", xyz, 0
                d.id = s * per_slice + SCRAMBLED[i]
            out.append(d)
    return out[::-1]  # order must not matter


@pytest.mark.parametrize("tpu", [True, False])
def test_slices_split_only_the_data_axis(tpu):
    devices = fake_devices(2, 8, tpu=tpu)
    grid = device_grid(devices, [4, 2, 2], slices=2)
    slice_of = np.vectorize(lambda d: d.slice_index if tpu else d.process_index)(grid)
    assert grid.shape == (4, 2, 2)
    # fsdp x tensor groups never leave a slice; the data axis walks slice 0 then slice 1
    assert (slice_of == slice_of[:, :1, :1]).all()
    np.testing.assert_array_equal(slice_of[:, 0, 0], [0, 0, 1, 1])
    assert sorted(d.id for d in grid.ravel()) == list(range(16))


def neighbours_on_every_axis(block) -> bool:
    """Each step along each axis of `block` moves to a chip one coordinate away."""
    coords = np.array([[[d.coords for d in row] for row in plane] for plane in block])
    return all((np.abs(np.diff(coords, axis=a)).sum(-1) == 1).all() for a in range(3))


def test_tpu_slice_block_follows_the_topology():
    """Within a slice every mesh axis steps between neighbouring chips; laying the chips out by
    id (what a plain reshape does) would pair chips across the cuboid."""
    grid = device_grid(fake_devices(2, 8, tpu=True), [4, 2, 2], slices=2)
    assert neighbours_on_every_axis(grid[:2]) and neighbours_on_every_axis(grid[2:])
    assert neighbours_on_every_axis(device_grid(fake_devices(1, 8, tpu=True), [2, 2, 2]))
    by_id = np.asarray(sorted(fake_devices(1, 8, tpu=True), key=lambda d: d.id)).reshape(2, 2, 2)
    assert not neighbours_on_every_axis(by_id)  # the scrambled ids make the check meaningful


def test_slice_errors_name_the_problem():
    devices = fake_devices(2, 4, tpu=False)
    with pytest.raises(ValueError, match="form 2 slice"):
        device_grid(devices, [4, 1, 2], slices=4)
    with pytest.raises(ValueError, match="does not split over dcn_data=2"):
        device_grid(devices, [1, 4, 2], slices=2)
    with pytest.raises(ValueError, match=r"\[2, 1, 2\] .* block per slice x dcn_data=2: .*3"):
        device_grid(devices[1:], [4, 1, 2], slices=2)


def test_single_host_cannot_fake_two_slices():
    with pytest.raises(ValueError, match="dcn_data=2 but the devices form 1 slice"):
        make_mesh({"data": -1, "dcn_data": 2})


def test_cpu_mesh_keeps_the_device_order():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert [d.id for d in mesh.devices.ravel()] == list(range(8))
