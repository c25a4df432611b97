"""Every kernel lowers through the Pallas Triton (GPU) lowering, checked on a CPU-only machine.

`lower(lowering_platforms=("cuda",))` runs Pallas' Triton lowering rules without a GPU, so an
operation the GPU path cannot express fails here (e.g. a boolean reduction), not on first GPU use.
It does not compile to PTX or run: tile-size and register-pressure issues still need a GPU.
"""

import andesvl_jax.kernels._common as common
import jax
import jax.numpy as jnp
import pytest
from andesvl_jax.kernels import quantize_activations, quantize_weight, sparsify_weight
from andesvl_jax.kernels.attention import packed_attention
from andesvl_jax.kernels.lora_matmul import lora_matmul_pallas
from andesvl_jax.kernels.quant_matmul import quantized_matmul_a8_pallas, quantized_matmul_pallas
from andesvl_jax.kernels.sparse_matmul import sparse_matmul_pallas


@pytest.fixture(autouse=True)
def triton_params_on_cpu(monkeypatch):
    """Emit the GPU compiler params even though the default backend is the CPU."""
    monkeypatch.setitem(common._COMPILER_PARAMS, "cpu", common._triton_params)


def lower_for_gpu(fn, *args):
    jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))


def test_attention_forward_and_backward():
    q, k = jnp.zeros((1, 128, 4, 64), jnp.bfloat16), jnp.zeros((1, 128, 2, 64), jnp.bfloat16)
    ids = jnp.ones((1, 128), jnp.int32)
    kw = dict(
        q_segment_ids=ids,
        kv_segment_ids=ids,
        q_positions=ids,
        kv_positions=ids,
        causal=True,
        mask=jnp.ones((1, 128, 128), bool),
        interpret=False,
    )

    def loss(q, k, v):
        return packed_attention(q, k, v, **kw).astype(jnp.float32).sum()

    lower_for_gpu(jax.grad(loss, argnums=(0, 1, 2)), q, k, k)


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_quantized_matmul(bits):
    pw = quantize_weight(jnp.ones((256, 256)), bits, 64, zero_point=bits == 3)
    x = jnp.zeros((16, 256), jnp.bfloat16)
    lower_for_gpu(lambda x, pw: quantized_matmul_pallas(x, pw, interpret=False), x, pw)
    x_q, x_scale = quantize_activations(x)
    lower_for_gpu(
        lambda a, s, pw: quantized_matmul_a8_pallas(a, s, pw, interpret=False), x_q, x_scale, pw
    )


def test_sparse_and_lora_matmul():
    x = jnp.zeros((16, 256), jnp.bfloat16)
    lower_for_gpu(
        lambda x, sw: sparse_matmul_pallas(x, sw, interpret=False),
        x,
        sparsify_weight(jnp.ones((256, 256)), 128),
    )
    w, a, b = (
        jnp.zeros((256, 256), jnp.bfloat16),
        jnp.zeros((3, 256, 16), jnp.bfloat16),
        jnp.zeros((3, 16, 256), jnp.bfloat16),
    )
    lower_for_gpu(
        lambda *args: lora_matmul_pallas(*args, interpret=False),
        x,
        w,
        a,
        b,
        jnp.zeros((16,), jnp.int32),
    )
