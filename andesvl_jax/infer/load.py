"""One function to get (model, tokenizer) from whatever a user points at.

* a training workdir (`config.json` written by `train`, orbax checkpoints): the run's model preset
  and the latest checkpoint; the run's tokenizer (data.tokenizer, or the embedded one);
* a safetensors checkpoint directory (HF Qwen3 / official AndesVL layout, see convert/): imported,
  with the `tokenizer.json` next to it (the embedded tokenizer only fits a 512-token vocabulary).
"""

from __future__ import annotations

import pathlib

from andesvl_jax.convert.workdir import RUN_CONFIG, load_run_config, run_tokenizer, trained_model
from andesvl_jax.data.tokenizer import DEFAULT_VOCAB_SIZE, TextTokenizer


def _checkpoint_tokenizer(directory: pathlib.Path, vocab_size: int) -> TextTokenizer:
    if (directory / "tokenizer.json").is_file():
        return TextTokenizer.from_file(directory)
    if vocab_size == DEFAULT_VOCAB_SIZE:
        return TextTokenizer.default()
    raise FileNotFoundError(
        f"{directory}: no tokenizer.json, and the embedded tokenizer only fits a "
        f"{DEFAULT_VOCAB_SIZE}-token vocabulary (this model has {vocab_size})"
    )


def load_model(path: str | pathlib.Path, overrides: dict | None = None):
    """(AndesVL module, TextTokenizer) from a training workdir or a safetensors directory."""
    path = pathlib.Path(path)
    if (path / "checkpoints").is_dir() and (path / RUN_CONFIG).is_file():
        config = load_run_config(path)
        return trained_model(config, path), run_tokenizer(config)
    if any(path.glob("*.safetensors")):
        from andesvl_jax.convert.loader import load_checkpoint

        model, _ = load_checkpoint(path, overrides=overrides)
        return model, _checkpoint_tokenizer(path, model.cfg.text.vocab_size)
    raise FileNotFoundError(
        f"{path}: neither a training workdir ({RUN_CONFIG} + checkpoints/) nor a safetensors "
        "checkpoint directory"
    )
