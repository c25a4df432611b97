"""PEFT-format adapter files: ours loaded by HF `peft` onto the HF Qwen3 of the same base weights
give our logits, and a peft-made adapter loaded by us gives peft's logits (fp32, CPU)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from andesvl_jax.compress.lora import LoraRule, apply_lora, lora_modules  # noqa: E402
from andesvl_jax.compress.lora_files import attach, load_adapter, save_adapter  # noqa: E402
from andesvl_jax.convert.loader import load_checkpoint  # noqa: E402
from andesvl_jax.convert.safetensors_io import CheckpointError  # noqa: E402
from andesvl_jax.convert.torch_reference import randomise  # noqa: E402

IDS = np.random.default_rng(0).integers(0, 97, (2, 11))


class LLMOnly(nnx.Module):
    """An imported Qwen3 under `llm`, so LoRA paths read 'llm/layers/i/...' as in AndesVL."""

    def __init__(self, llm):
        self.llm = llm

    def __call__(self, ids):
        ids = jnp.asarray(ids)
        pos = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
        hidden, _ = self.llm(self.llm.embed(ids), pos, jnp.ones(ids.shape, jnp.int32))
        return np.asarray(self.llm.logits(hidden))


@pytest.fixture(scope="module")
def hf_base(tmp_path_factory):
    cfg = transformers.Qwen3Config(
        vocab_size=97,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rope_theta=1e4,
        tie_word_embeddings=True,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    ref = randomise(transformers.Qwen3ForCausalLM(cfg), 0).eval()
    path = tmp_path_factory.mktemp("qwen3")
    ref.save_pretrained(path)
    return path


def hf_model(path):
    model = transformers.Qwen3ForCausalLM.from_pretrained(path).eval()
    model.config._attn_implementation = "eager"
    return model


def ours(path):
    llm, _ = load_checkpoint(path, overrides={"scan_layers": False})
    return LLMOnly(llm)


def hf_logits(model):
    with torch.no_grad():
        return model(torch.from_numpy(IDS)).logits.numpy()


def close(a, b):
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max()), np.abs(a - b).max()


def test_our_adapter_loads_in_peft_with_the_same_logits(hf_base, tmp_path):
    model = ours(hf_base)
    rules = [
        LoraRule(r"^llm/layers/0/mlp/", rank=2, alpha=3.0),  # rank/alpha_pattern entries
        LoraRule(r"^llm/layers/\d+/(attn|mlp)/", rank=4, alpha=8.0),
    ]
    apply_lora(model, rules)
    for i, (_, m) in enumerate(lora_modules(model)):
        m.lora_b.set_value(np.random.default_rng(i).normal(0, 0.3, m.lora_b.shape))
    expected = model(IDS)
    save_adapter(model, tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["rank_pattern"]["model.layers.0.mlp.up_proj"] == 2
    got = hf_logits(peft.PeftModel.from_pretrained(hf_model(hf_base), tmp_path / "adapter"))
    close(got, expected)
    assert np.abs(expected - hf_logits(hf_model(hf_base))).max() > 1e-2  # the adapter matters


def test_peft_adapter_loads_in_ours_with_the_same_logits(hf_base, tmp_path):
    config = peft.LoraConfig(
        r=4,
        lora_alpha=12,
        target_modules=["q_proj", "v_proj", "down_proj"],
        rank_pattern={"down_proj": 2},
        use_rslora=True,
    )
    model = peft.get_peft_model(hf_model(hf_base), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    expected = hf_logits(model.eval())
    model.save_pretrained(tmp_path / "peft")
    adapter = load_adapter(tmp_path / "peft")
    assert adapter.max_rank == 4 and len(adapter.targets) == 6
    close(attach(ours(hf_base), adapter)(IDS), expected)


def test_bad_adapter_files_are_errors_naming_the_tensor(hf_base, tmp_path):
    from safetensors.numpy import load_file, save_file

    model = apply_lora(ours(hf_base), [LoraRule(r"^llm/layers/\d+/attn/q$", rank=4)])
    save_adapter(model, tmp_path / "a")
    weights = tmp_path / "a" / "adapter_model.safetensors"
    tensors = load_file(weights)
    key = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"
    save_file({k: v for k, v in tensors.items() if k != key}, weights)
    missing = r"layers\.1\.self_attn\.q_proj\.lora_B\.weight is missing"
    with pytest.raises(CheckpointError, match=missing):
        load_adapter(tmp_path / "a")
    save_file({**tensors, key: np.zeros((40, 4), np.float32)}, weights)
    with pytest.raises(
        CheckpointError, match="q factors map 48 -> 40 features, the base linear maps 48 -> 64"
    ):
        attach(ours(hf_base), load_adapter(tmp_path / "a"))
    save_file({**tensors, key: np.zeros((64, 3), np.float32)}, weights)
    with pytest.raises(CheckpointError, match="do not fit rank 4"):
        load_adapter(tmp_path / "a")
