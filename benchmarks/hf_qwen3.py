"""The transformers side of the benchmarks: a Qwen3 config equal to ours, and non-trivial weights."""

from __future__ import annotations


def qwen3_config(text_cfg, max_positions: int):
    """transformers.Qwen3Config with the shapes of our TextConfig (sdpa attention)."""
    import transformers

    t = text_cfg
    cfg = transformers.Qwen3Config(
        vocab_size=t.vocab_size,
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_kv_heads,
        head_dim=t.head_dim,
        rope_theta=t.rope_theta,
        rms_norm_eps=t.norm_eps,
        tie_word_embeddings=t.tie_embeddings,
        max_position_embeddings=max(max_positions, 64),
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def randomise(model, seed: int):
    """Non-trivial weights (as tests/models/test_hf_parity.py): norms ~1, matrices ~1.5/sqrt(fan_in)."""
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
