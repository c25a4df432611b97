"""GRPO rollouts sampled on a mesh over the host's devices (tensor/data parallel), weights in bf16."""

import jax
import numpy as np
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.data import TextTokenizer
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.train.rollouts import RolloutIterator, RolloutSpec, generation_mesh


def _rollout(config, model):
    spec = RolloutSpec.from_config(config)
    it = RolloutIterator(spec, TextTokenizer.default(), policy=lambda: model)
    return spec, it.rollout(0)


def _config(make_config):
    config = make_config(stage="grpo", steps=2)
    config.grpo.update(prompts_per_rollout=2, group_size=2, max_new_tokens=6, temperature=0.7)
    return config


def test_rollouts_on_a_tensor_data_mesh_equal_the_unsharded_ones(make_config):
    config = _config(make_config)
    model = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0))
    _, plain = _rollout(config, model)
    config.grpo.generation_mesh.update(data=2, tensor=2)
    spec, sharded = _rollout(config, model)
    mesh = generation_mesh(spec)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 1, "tensor": 2}
    assert set(mesh.devices.flat) <= set(jax.local_devices())
    np.testing.assert_array_equal(sharded.input_ids, plain.input_ids)  # same tokens sampled
    np.testing.assert_allclose(sharded.old_logprobs, plain.old_logprobs, atol=1e-5)
    np.testing.assert_array_equal(sharded.rewards, plain.rewards)


def test_generation_weights_in_bf16_sample_from_the_same_policy(make_config):
    config = _config(make_config)
    config.grpo.update(temperature=1e-4)  # ~greedy: bf16 rounding must not change the argmax path
    model = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0))
    _, plain = _rollout(config, model)
    config.grpo.generation_dtype = "bfloat16"
    config.grpo.generation_mesh.update(tensor=2)
    _, bf16 = _rollout(config, model)
    agree = np.mean(bf16.input_ids == plain.input_ids)
    assert agree > 0.9, agree
    # old log-probs come from the training-precision policy, not the bf16 sampler
    same = bf16.input_ids == plain.input_ids
    np.testing.assert_allclose(
        bf16.old_logprobs[same.all(1)], plain.old_logprobs[same.all(1)], rtol=1e-5
    )


def test_engine_weights_are_sharded_and_stored_in_the_generation_dtype():
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.sharding import make_mesh

    model = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0))
    mesh = make_mesh({"tensor": 2}, jax.local_devices()[:2])
    engine = Engine(model, TextTokenizer.default(), mesh=mesh, weights_dtype="bfloat16")
    leaves = jax.tree.leaves(nnx.state(engine.model))
    floats = [x for x in leaves if jax.numpy.issubdtype(x.dtype, jax.numpy.floating)]
    assert floats and all(x.dtype == jax.numpy.bfloat16 for x in floats)
    # no parameter is whole on one device when its sharded axis divides the mesh
    split = [x for x in floats if x.sharding.shard_shape(x.shape) != x.shape]
    assert split, "no parameter is sharded over the generation mesh"
    assert all(set(x.sharding.device_set) == set(mesh.devices.flat) for x in floats)
