"""Run observability: JSONL + TensorBoard metrics, a progress bar, and the FLOP count behind MFU."""

from __future__ import annotations

import json
import pathlib
import time

from tqdm import tqdm

from andesvl_jax.config import AndesVLConfig


def train_flops(
    cfg: AndesVLConfig, text_tokens: float, patches: float, seq_len: int, max_patches: int
) -> float:
    """Forward + backward FLOPs of one step: 6 * params * tokens for the matmuls, plus attention.

    Attention is counted for the full (padded) buffers, 12 * layers * width * length per token,
    the standard estimate (PaLM appendix B); frozen towers are counted like trained ones.
    """
    t, v = cfg.text, cfg.vision
    llm_layer = (
        t.hidden_size * (2 * t.num_heads * t.head_dim + 2 * t.num_kv_heads * t.head_dim)
        + 3 * t.hidden_size * t.intermediate_size
    )
    llm = t.num_layers * llm_layer + t.hidden_size * t.vocab_size
    vit_layer = (
        4 * v.hidden_size**2 + (3 if v.mlp == "swiglu" else 2) * v.hidden_size * v.intermediate_size
    )
    vit = v.num_layers * vit_layer + v.patch_dim * v.hidden_size
    proj = cfg.projector_in**2 + cfg.projector_in * t.hidden_size
    attention = (
        12 * t.num_layers * t.num_heads * t.head_dim * seq_len * text_tokens
        + 12 * v.num_layers * v.hidden_size * max_patches * patches
    )
    return (
        6.0 * (llm * text_tokens + (vit + proj / cfg.tokens_per_patch_group) * patches) + attention
    )


class MetricsWriter:
    """Appends one JSON line per logged step to metrics.jsonl and mirrors scalars to TensorBoard."""

    def __init__(self, workdir: pathlib.Path, *, tensorboard: bool = True, process_index: int = 0):
        self.enabled = process_index == 0
        self.path = workdir / "metrics.jsonl"
        self.tb = None
        if self.enabled and tensorboard:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Progress:
    """Console progress bar: step, loss, lr, tokens/s, ETA (tqdm)."""

    def __init__(self, start: int, total: int, desc: str, enabled: bool = True):
        self.bar = tqdm(
            total=total, initial=start, desc=desc, disable=not enabled, dynamic_ncols=True
        )
        self.last = time.perf_counter()

    def update(self, steps: int, metrics: dict[str, float]) -> None:
        self.bar.update(steps)
        self.bar.set_postfix(
            loss=f"{metrics['loss']:.4f}",
            lr=f"{metrics['lr']:.2e}",
            tok_s=f"{metrics.get('tokens_per_s', 0):.0f}",
        )

    def close(self) -> None:
        self.bar.close()
