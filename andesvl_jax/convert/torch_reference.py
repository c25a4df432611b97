"""The `transformers` side of parity tests and benchmarks: a Qwen3 model shaped like ours, with
non-trivial weights. torch and transformers (the `test` extra) are imported on use."""

from __future__ import annotations

from andesvl_jax.config import TextConfig
from andesvl_jax.convert.hf_config import qwen3_fields


def hf_qwen3_config(text_cfg: TextConfig, max_positions: int):
    """transformers.Qwen3Config with the shapes of `text_cfg` (sdpa attention, no token ids)."""
    import transformers

    cfg = transformers.Qwen3Config(
        **{**qwen3_fields(text_cfg), "max_position_embeddings": max(max_positions, 64)},
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def randomise(model, seed: int):
    """Non-trivial weights everywhere: norms ~1, other vectors ~0.05, matrices ~1.5/sqrt(fan_in).

    HF initialises norms to 1 and biases to 0, which would hide bugs in a parity test.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(
                    1.0 + 0.1 * torch.randn(p.shape, generator=g)
                    if "norm" in name
                    else 0.05 * torch.randn(p.shape, generator=g)
                )
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 1.5 / max(p.shape[-1], 1) ** 0.5)
    return model
