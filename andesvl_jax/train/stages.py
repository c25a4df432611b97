"""Training stages (DESIGN.md section 6) as a registry: what trains, which data policy, where it starts.

Frozen modules get no optimizer state and no update; a stage starts from the previous stage's
checkpoint (`init.from_stage_workdir`) or imported HF/AndesVL weights (`init.from_pretrained`).
"""

from __future__ import annotations

import dataclasses

from andesvl_jax.compress.lora import LORA_LEAVES

ALL = ("vision", "projector", "llm")


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    trainable: tuple[str, ...]  # top-level AndesVL modules that train
    data_stage: str  # andesvl_jax.data.pipeline.DATA_STAGES key: loss mask, budgets, mixture
    description: str
    objective: str = "next_token"  # train/objectives.py OBJECTIVES key
    # only LoRA factors train (compress/lora.py), on the float base or the deployed one (qalft)
    adapters: str | None = None  # None | "float" | "deployed"


STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage(
            "align",
            ("vision", "projector"),
            "align_896",
            "vision-language alignment up to 896 px: LLM frozen, ViT + projector train",
        ),
        Stage(
            "align_hr",
            ("vision", "projector"),
            "align_1792",
            "alignment continued up to 1792 px (16384 patches), LLM still frozen",
        ),
        Stage(
            "joint",
            ALL,
            "joint",
            "joint pre-training: everything trains at a low LR, loss on all text, interleaved + text-only mix",
        ),
        Stage(
            "multitask",
            ALL,
            "multitask",
            "multi-task pre-training: answer-only loss, 16384 patches, 32768 tokens",
        ),
        Stage("sft", ALL, "sft", "supervised fine-tuning: answer-only loss"),
        Stage(
            "mpo",
            ALL,
            "mpo",
            "mixed preference optimisation (Instruct): 0.8 DPO + 0.2 BCO + 1.0 SFT vs a frozen reference",
            objective="mpo",
        ),
        Stage(
            "grpo_warmup",
            ALL,
            "sft",
            "warm-start before GRPO: a short SFT on the RL task so the policy's pass rate is not ~0",
        ),
        Stage(
            "grpo",
            ALL,
            "grpo",
            "group relative policy optimisation (Thinking): rollouts, rule rewards, clipped ratio, k3 KL",
            objective="grpo",
        ),
        Stage(
            "qat",
            ("llm",),
            "sft",
            "quantization-aware training (LSQ, compress/): the LLM's linears fake-quantized by "
            "config.quant.rules, weights and step sizes train, optional distillation from the float model",
            objective="qat",
        ),
        Stage(
            "sparse",
            ("llm",),
            "sft",
            "sparse + quantized fine-tuning (compress/prune.py): the LLM's linears pruned once by "
            "config.sparse (fixed mask), kept values LSQ fake-quantized, distilled from the dense model",
            objective="sparse",
        ),
        Stage(
            "lora",
            ("llm",),
            "sft",
            "LoRA adapters (config.lora) on the float model; only the factors train; the adapter "
            "is written as a PEFT directory (workdir/adapter)",
            adapters="float",
        ),
        Stage(
            "qalft",
            ("llm",),
            "sft",
            "quantization-aware LoRA fine-tuning: a LoRA trained against the deployed integer "
            "base (config.lora.deployed, never re-quantized), branch in its device precision",
            adapters="deployed",
        ),
        Stage(
            "eagle",
            ("draft",),
            "sft",
            "EAGLE draft head (train/eagle.py) on the frozen target's online features: SmoothL1 "
            "features + 0.1 CE vs the target's distribution, feature noise",
            objective="eagle",
        ),
        Stage(
            "hass",
            ("draft",),
            "sft",
            "HASS draft head: EAGLE's loss + top-K distillation of the target's ranking + "
            "harmonized context alignment (3 unrolled steps on the draft's own features)",
            objective="hass",
        ),
    ]
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise KeyError(f"unknown training stage {name!r}; expected one of {sorted(STAGES)}")
    return STAGES[name]


def is_trainable(stage: Stage):
    """nnx filter: parameters under the stage's trainable modules (adapter stages: the LoRA
    factors and their LSQ steps only)."""

    def predicate(path, value) -> bool:
        if getattr(value, "frozen_in_training", False):  # e.g. compress.prune.SparseMask
            return False
        if stage.adapters is not None:
            return bool(path) and path[-1] in LORA_LEAVES
        return bool(path) and path[0] in stage.trainable

    return predicate
