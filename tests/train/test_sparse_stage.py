"""The sparse stage: linears pruned once (fixed masks, frozen), kept values LSQ fake-quantized and
trained with distillation from the dense model; pruned weights stay zero; the exported packed file
is exactly the trained model."""

import numpy as np
import pytest
from flax import nnx

from andesvl_jax.compress.prune import SparseLinear, SparseMask
from andesvl_jax.compress.sparse_export import sparse_trained_model
from andesvl_jax.compress.sparse_io import load_sparse, save_sparse
from andesvl_jax.train.loop import train


def sparse_config(make_config, **overrides):
    return make_config(
        stage="sparse",
        **{
            "sparse.rules": "1:4",
            "sparse.method": "wanda",
            "steps": 2,
            "optim.lr": 1e-2,
            **overrides,
        },
    )


def test_sparse_finetune_keeps_pruned_weights_at_zero(make_config, tmp_path):
    config = sparse_config(make_config)
    train(config, tmp_path / "run")
    model = sparse_trained_model(tmp_path / "run")
    sites = [m for _, m in nnx.iter_modules(model) if isinstance(m, SparseLinear)]
    assert len(sites) == 7  # q k v o gate up down (stacked over the 2 layers)
    assert len(nnx.to_flat_state(nnx.state(model, SparseMask))) == 7
    for m in sites:
        mask = np.asarray(m.mask[...]) > 0
        kernel = np.asarray(m.kernel[...])
        assert np.all(kernel[~mask] == 0)  # pruned stayed zero through training
        assert abs(mask.mean() - 0.25) < 1e-6  # the 1:4 mask is unchanged
        assert np.count_nonzero(kernel[mask]) > 0.9 * mask.sum()
    ids = np.random.default_rng(0).integers(0, 400, size=(1, 12))
    path = save_sparse(model, tmp_path / "s.safetensors")
    np.testing.assert_allclose(
        np.asarray(load_sparse(path, packed=False)(ids)[0]),
        np.asarray(model(ids)[0]),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ({"sparse.rules": "u90x"}, "unknown sparsity recipe"),
        ({"sparse.method": "random"}, "config.sparse.method='random' unknown"),
        ({"sparse.group": 32}, "sparse format stores"),
    ],
)
def test_bad_sparse_config_is_a_clear_error(make_config, override, message):
    from andesvl_jax.train.config_checks import validate_config

    with pytest.raises(ValueError, match=message):
        validate_config(sparse_config(make_config, **override))
