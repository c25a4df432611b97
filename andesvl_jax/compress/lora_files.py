"""LoRA adapters as PEFT files: a directory with `adapter_config.json` + `adapter_model.safetensors`.

Key names are PEFT's for an HF `Qwen3ForCausalLM` (the LLM of AndesVL):
`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` [r, in] and `...lora_B.weight`
[out, r]; our factors are A [in, r], B [r, out] (transposed). The module names come from the
checkpoint importer's Qwen3 key map (convert/keymaps.py), so import, export and adapters share one
name table. Scaling = lora_alpha / r (or / sqrt(r) with use_rslora), per module through PEFT's
rank_pattern / alpha_pattern when ranks differ. `target_modules` lists the exact module names, so
PEFT adapts exactly the linears we did. Adapters on the vision tower or projector have no PEFT
Qwen3 name: saving one is an error that says so.

Loading checks everything against the config and against a base model: an unknown module, a
missing lora_A/lora_B, a shape that disagrees with the rank or the base's width, a non-finite
value, or an unsupported PEFT option (DoRA, fan_in_fan_out, biases) is a `CheckpointError` naming
the file and tensor.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re

import numpy as np
from safetensors import SafetensorError, safe_open

from andesvl_jax.compress.lora import LoraRule, apply_lora, base_sites, in_out, lora_modules
from andesvl_jax.config import get_preset
from andesvl_jax.convert.keymaps import qwen3_rules
from andesvl_jax.convert.safetensors_io import CheckpointError, require_finite, write_safetensors

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."


@dataclasses.dataclass
class Adapter:
    """One adapter: per-layer module path -> (A [in, r], B [r, out], scale), float32 numpy."""

    factors: dict[str, tuple[np.ndarray, np.ndarray, float]]
    branch: str = "float"

    @property
    def targets(self) -> set[str]:
        return set(self.factors)

    @property
    def max_rank(self) -> int:
        return max(a.shape[1] for a, _, _ in self.factors.values())

    def nbytes(self, dtype=np.float16) -> int:
        """Bytes of the factors stored as `dtype` (the on-device cost of the adapter)."""
        size = np.dtype(dtype).itemsize
        return sum((a.size + b.size) * size for a, b, _ in self.factors.values())


def _name_table() -> list[tuple[str, str]]:
    """(our template 'llm/layers/{i}/attn/q', PEFT's 'model.layers.{i}.self_attn.q_proj') pairs
    from the Qwen3 key map."""
    cfg = get_preset("tiny")  # names only; tie_embeddings does not change the layer linears
    out = []
    for rule in qwen3_rules(cfg, "", "llm."):
        ours, theirs = rule.ours[0], rule.theirs[0]
        if ours.endswith(".kernel") and "{i}" in ours:
            out.append((ours[: -len(".kernel")].replace(".", "/"), theirs[: -len(".weight")]))
    return out


def _translate(name: str, source: str, target: str) -> str | None:
    m = re.fullmatch(re.escape(source).replace(re.escape("{i}"), r"(\d+)"), name)
    return None if m is None else target.replace("{i}", m.group(1))


NAMES = _name_table()


def peft_module(name: str) -> str:
    """Our per-layer path ('llm/layers/3/attn/q') -> PEFT's module name ('model.layers.3.self_attn.q_proj')."""
    for ours, theirs in NAMES:
        found = _translate(name, ours, theirs)
        if found is not None:
            return found
    raise CheckpointError(
        f"{name}: PEFT adapter files hold Qwen3 LLM adapters (attention and MLP linears of "
        "llm/layers/*); this module has no PEFT Qwen3 name"
    )


def our_module(module: str) -> str | None:
    """PEFT module name -> our per-layer path (None: not a Qwen3 layer linear)."""
    found = (_translate(module, theirs, ours) for ours, theirs in NAMES)
    return next((f for f in found if f is not None), None)


def model_adapter(model) -> Adapter:
    """The adapter held by `model`'s LoraLinears (stacked layers split per layer)."""
    factors, branches = {}, set()
    for _, m in lora_modules(model):
        a, b = (np.asarray(v, np.float32) for v in m.factors())
        branches.add(m.rule.branch)
        for i, name in enumerate(m.names):
            pick = (lambda x: x) if a.ndim == 2 else (lambda x, i=i: x[i])  # noqa: E731
            factors[name] = (pick(a), pick(b), m.scale)
    if not factors:
        raise ValueError("the model has no LoRA adapters (compress.lora.apply_lora)")
    return Adapter(factors, branches.pop() if len(branches) == 1 else "float")


def save_adapter(adapter, directory, *, base_model: str = "") -> pathlib.Path:
    """Write `adapter` (an Adapter or a model with LoraLinears) as a PEFT adapter directory."""
    if not isinstance(adapter, Adapter):
        adapter = model_adapter(adapter)
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, ranks, alphas = {}, {}, {}
    for name, (a, b, scale) in sorted(adapter.factors.items()):
        module = peft_module(name)
        tensors[f"{PREFIX}{module}.lora_A.weight"] = np.ascontiguousarray(a.T)
        tensors[f"{PREFIX}{module}.lora_B.weight"] = np.ascontiguousarray(b.T)
        ranks[module], alphas[module] = a.shape[1], scale * a.shape[1]
    r = max(set(ranks.values()), key=list(ranks.values()).count)
    alpha = max(set(alphas.values()), key=list(alphas.values()).count)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model or None,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted(ranks),
        "rank_pattern": {m: v for m, v in ranks.items() if v != r},
        "alpha_pattern": {m: v for m, v in alphas.items() if v != alpha},
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_safetensors(
        directory / WEIGHTS_NAME, tensors, {"format": "pt", "andesvl_branch": adapter.branch}
    )
    return directory


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rank/alpha_pattern lookup: a key matches a module name ending in it."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def load_adapter(directory) -> Adapter:
    """A PEFT LoRA adapter directory -> Adapter (checked; see the module docstring)."""
    directory = pathlib.Path(directory)
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise CheckpointError(f"{directory}: not a PEFT adapter directory ({p.name} missing)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: unreadable JSON ({e})") from e
    if cfg.get("peft_type") != "LORA":
        raise CheckpointError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r}, expected 'LORA'")
    for key, ok in (("use_dora", False), ("fan_in_fan_out", False), ("bias", "none")):
        if cfg.get(key, ok) != ok:
            raise CheckpointError(f"{cfg_path}: {key}={cfg[key]!r} is not supported (need {ok!r})")
    r, alpha = int(cfg.get("r", 8)), float(cfg.get("lora_alpha", 8))
    rslora = bool(cfg.get("use_rslora", False))
    try:
        f = safe_open(w_path, framework="np")
        keys = set(f.keys())
        branch = (f.metadata() or {}).get("andesvl_branch", "float")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{w_path}: not a readable safetensors file ({e})") from e
    modules = {}
    for key in sorted(keys):
        m = re.fullmatch(rf"{re.escape(PREFIX)}(.+)\.lora_([AB])(?:\.\w+)?\.weight", key)
        if m is None:
            raise CheckpointError(f"{w_path}: tensor {key} is not a LoRA factor (lora_A/lora_B)")
        modules.setdefault(m.group(1), {})[m.group(2)] = key
    if not modules:
        raise CheckpointError(f"{w_path}: no LoRA tensors")
    factors = {}
    for module, pair in modules.items():
        name = our_module(module)
        if name is None:
            raise CheckpointError(f"{w_path}: module {module} is not a Qwen3 layer linear")
        for side in "AB":
            if side not in pair:
                raise CheckpointError(f"{w_path}: {PREFIX}{module}.lora_{side}.weight is missing")
        a = require_finite(f.get_tensor(pair["A"]).astype(np.float32), str(w_path), pair["A"])
        b = require_finite(f.get_tensor(pair["B"]).astype(np.float32), str(w_path), pair["B"])
        rank = int(_pattern_value(cfg.get("rank_pattern") or {}, module, r))
        mod_alpha = float(_pattern_value(cfg.get("alpha_pattern") or {}, module, alpha))
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise CheckpointError(
                f"{w_path}: {module} lora_A {a.shape} / lora_B {b.shape} do not fit rank {rank} "
                "([r, in] and [out, r])"
            )
        scale = mod_alpha / (math.sqrt(rank) if rslora else rank)
        factors[name] = (a.T.copy(), b.T.copy(), scale)
    return Adapter(factors, branch)


def check_fits(adapter: Adapter, model, where: str = "adapter") -> None:
    """Every adapter module exists in `model` with the factors' in/out widths."""
    widths = {n: in_out(s.module) for s in base_sites(model) for n in s.names}
    for name, (a, b, _) in sorted(adapter.factors.items()):
        if name not in widths:
            raise CheckpointError(f"{where}: module {name} does not exist in the base model")
        if (a.shape[0], b.shape[1]) != widths[name]:
            raise CheckpointError(
                f"{where}: {name} factors map {a.shape[0]} -> {b.shape[1]} features, the base "
                f"linear maps {widths[name][0]} -> {widths[name][1]}"
            )


def attach(model, adapter: Adapter, *, where: str = "adapter"):
    """`model` (separate layers) with `adapter`'s LoraLinears and factors (in place; returns it)."""
    check_fits(adapter, model, where)
    rules = [
        LoraRule(f"^{re.escape(n)}$", a.shape[1], scale * a.shape[1], branch=adapter.branch)
        for n, (a, _, scale) in sorted(adapter.factors.items())
    ]
    apply_lora(model, rules)
    for _, m in lora_modules(model):
        a, b, _ = adapter.factors[m.names[0]]
        m.lora_a.set_value(np.asarray(a).reshape(m.lora_a.shape))
        m.lora_b.set_value(np.asarray(b).reshape(m.lora_b.shape))
    return model


__all__ = [
    "Adapter",
    "attach",
    "check_fits",
    "load_adapter",
    "model_adapter",
    "peft_module",
    "save_adapter",
]
