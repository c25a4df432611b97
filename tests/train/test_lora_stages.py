"""The lora and qalft stages: only LoRA factors train, the adapter is written as a PEFT directory,
and QALFT trains scenario LoRAs against a deployed base whose file stays bit-identical."""

import hashlib

import numpy as np
import pytest
from flax import nnx

from andesvl_jax.compress import deploy, quantize_model, save_deployed
from andesvl_jax.compress.deploy import Deployed
from andesvl_jax.compress.lora_files import load_adapter
from andesvl_jax.compress.qlinear import quant_sites
from andesvl_jax.config import get_preset
from andesvl_jax.configs import model_config
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.train.loop import train
from andesvl_jax.train.stages import get_stage, is_trainable


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trained_b(workdir) -> float:
    adapter = load_adapter(workdir / "adapter")
    return max(float(np.abs(b).max()) for _, b, _ in adapter.factors.values())


def adapter_state(make_config, stage_name, **overrides):
    import jax

    from andesvl_jax.sharding import DEFAULT_RULES, make_mesh
    from andesvl_jax.train.loop import initial_state
    from andesvl_jax.train.objectives import OBJECTIVES

    config = make_config(stage=stage_name, **overrides)
    stage = get_stage(stage_name)
    return initial_state(
        config,
        model_config(config),
        make_mesh({"data": 1}, jax.devices()[:1]),
        DEFAULT_RULES,
        stage,
        OBJECTIVES[stage.objective](config),
    )


def test_lora_stage_state_holds_only_the_factors_and_writes_a_peft_adapter(make_config, tmp_path):
    from andesvl_jax.train.adapter_stage import write_adapter

    graphdef, state, _ = adapter_state(
        make_config, "lora", **{"lora.targets": "llm_attn", "lora.rank": 4}
    )
    assert {p[-1] for p, _ in nnx.to_flat_state(state.params)} == {"lora_a", "lora_b"}
    write_adapter(graphdef, state, tmp_path)
    adapter = load_adapter(tmp_path / "adapter")
    assert len(adapter.targets) == 4 * get_preset("tiny").text.num_layers
    assert adapter.max_rank == 4 and trained_b(tmp_path) == 0  # B starts at zero


def test_adapter_stage_filter_takes_only_lora_leaves():
    from andesvl_jax.compress.lora import apply_lora

    model = apply_lora(AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(0)), "llm_qv")
    _, params, _ = nnx.split(model, is_trainable(get_stage("qalft")), ...)
    assert {p[-1] for p, _ in nnx.to_flat_state(params)} == {"lora_a", "lora_b"}


@pytest.fixture(scope="module")
def deployed_file(tmp_path_factory):
    """A W4A8 deployed tiny model; static activation steps set directly (calibration is tested
    in tests/compress; here only their being frozen matters)."""
    model = AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(0))
    model = quantize_model(model, "w4a8_g32")
    for site in quant_sites(model):
        site.module.a_scale.set_value(np.full(site.module.a_scale.shape, 0.03, np.float32))
    path = tmp_path_factory.mktemp("deployed") / "w4a8.safetensors"
    save_deployed(deploy(model, separate_layers=True), path)
    return path


def test_qalft_trains_two_scenarios_without_touching_the_deployed_base(
    make_config, tmp_path, deployed_file
):
    before = sha(deployed_file)
    adapters = {}
    for scenario, mixture in {"count": {"count": 1.0}, "numbers": {"ocr_digits": 1.0}}.items():
        config = make_config(
            stage="qalft",
            steps=2,
            **{
                "lora.deployed": str(deployed_file),
                "lora.branch": "float16",
                "lora.targets": "llm_attn",
                "data.mixture": mixture,
            },
        )
        train(config, tmp_path / scenario)
        assert trained_b(tmp_path / scenario) > 0
        adapters[scenario] = load_adapter(tmp_path / scenario / "adapter")
    assert sha(deployed_file) == before  # the base is never re-quantized or rewritten
    a, b = adapters["count"].factors, adapters["numbers"].factors
    assert any(not np.array_equal(a[k][1], b[k][1]) for k in a)  # two different scenario LoRAs
    assert adapters["count"].branch == "float16"


def test_qalft_keeps_the_deployed_arrays_frozen(make_config, deployed_file):
    import jax

    graphdef, state, _ = adapter_state(
        make_config, "qalft", **{"lora.deployed": str(deployed_file)}
    )
    assert {p[-1] for p, _ in nnx.to_flat_state(state.params)} == {"lora_a", "lora_b"}
    frozen = nnx.merge(graphdef, state.params, state.frozen)
    assert len(jax.tree.leaves(nnx.state(frozen, Deployed))) > 0


def test_qalft_without_a_deployed_base_is_a_clear_error(make_config):
    from andesvl_jax.train.config_checks import validate_config

    with pytest.raises(ValueError, match="config.lora.deployed is empty"):
        validate_config(make_config(stage="qalft"))
    with pytest.raises(ValueError, match="branch 'int2' unknown"):
        validate_config(make_config(stage="lora", **{"lora.branch": "int2"}))


def test_qalft_gradients_pass_straight_through_the_deployed_base():
    """LoRA gradients on the deployed base ~ those on its fake-quantized (QAT) twin, whose
    quantizers are straight-through: the integer base must not stop them."""
    import jax
    import jax.numpy as jnp

    from andesvl_jax.compress.lora import LoraParam, apply_lora, lora_modules

    qat = quantize_model(
        AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(0)), "w4a8_g32"
    )
    for site in quant_sites(qat):
        site.module.a_scale.set_value(np.full(site.module.a_scale.shape, 0.03, np.float32))
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 500, (2, 8)))
    grads = []
    for model in (deploy(qat, separate_layers=True), qat):
        apply_lora(model, "llm_attn", seed=1)
        for i, (_, m) in enumerate(lora_modules(model)):
            m.lora_b.set_value(jax.random.normal(jax.random.key(i), m.lora_b.shape) * 0.1)
        graphdef, params, rest = nnx.split(model, LoraParam, ...)

        def loss(p, graphdef=graphdef, rest=rest):
            return jnp.mean(nnx.merge(graphdef, p, rest)(ids)[0] ** 2)

        flat = nnx.to_flat_state(jax.jit(jax.grad(loss))(params))
        grads.append({p: np.asarray(v.get_value()) for p, v in flat})
    deployed, fake = grads
    key = next(p for p in deployed if p[:4] == ("llm", "layers", 0, "attn") and p[-1] == "lora_a")
    a, b = deployed[key].ravel(), fake[key].ravel()
    assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.95
