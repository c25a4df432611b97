"""Compression: quantization rules, LSQ quantization-aware training, PTQ (RTN, GPTQ) and the exact
QAT -> deployed integer model mapping (docs/compression.md); LoRA adapters, PEFT files and QALFT
(compress/lora.py, compress/lora_files.py, docs/lora.md); pruning (prune.py: magnitude, Wanda,
SparseGPT; masks.py) and the packed sparse format (sparse_codec.py, sparse_io.py).

    model = quantize_model(model, "w4a8_g32")            # rules.py: QuantLinear per matching linear
    calibrate_activations(model, lambda m: m(batch))     # static activation steps
    ... train (QuantScale params are the LSQ steps) ... or apply_ptq(model, "gptq", run)
    deployed = deploy(model); save_deployed(deployed, "model.safetensors")
"""

from andesvl_jax.compress.calibrate import calibrate_activations
from andesvl_jax.compress.deploy import DeployedLinear, deploy
from andesvl_jax.compress.deployed_io import load_deployed, save_deployed
from andesvl_jax.compress.ptq import apply_ptq
from andesvl_jax.compress.qlinear import QuantLinear, QuantScale, quantize_model
from andesvl_jax.compress.rules import RECIPES, QuantRule, RuleError, get_recipe

__all__ = [
    "RECIPES",
    "DeployedLinear",
    "QuantLinear",
    "QuantRule",
    "QuantScale",
    "RuleError",
    "apply_ptq",
    "calibrate_activations",
    "deploy",
    "get_recipe",
    "load_deployed",
    "quantize_model",
    "save_deployed",
]
