"""One function to get (model, tokenizer) from whatever a user points at.

* a training workdir (`config.json` written by `train`, orbax checkpoints): the run's model preset
  and the latest checkpoint; the run's tokenizer (data.tokenizer, or the embedded one);
* a safetensors checkpoint directory (HF Qwen3 / official AndesVL layout, see convert/): imported,
  with the `tokenizer.json` next to it (the embedded tokenizer only fits a 512-token vocabulary);
* a deployed (integer) model: a `compress.save_deployed` file, or a directory holding one as
  `deployed.safetensors` (what `andesvl-jax quantize` writes), with the tokenizer as above; its
  linears run through the kernel dispatch (`impl="auto"`);
* a packed sparse model: a `compress.save_sparse` file, or a directory holding one as
  `sparse.safetensors`, with the tokenizer as above; its 1:4 linears run on the sparse kernel.

A run whose stage trained a changed structure (RUN_STRUCTURES: the qat stage's QuantLinears, the
sparse stage's SparseLinears)
is rebuilt in that structure before its checkpoint is restored, so chat/eval run the model that
was trained (fake-quantized on the exact path, equal to its deployed form).
"""

from __future__ import annotations

import pathlib

from andesvl_jax.compress.deploy import set_kernel_impl
from andesvl_jax.compress.deployed_io import is_deployed_file, load_deployed
from andesvl_jax.compress.prune import sparse_structure
from andesvl_jax.compress.qlinear import quantize_model
from andesvl_jax.compress.sparse_io import is_sparse_file, load_sparse
from andesvl_jax.convert.workdir import RUN_CONFIG, load_run_config, run_tokenizer, trained_model
from andesvl_jax.data.tokenizer import DEFAULT_VOCAB_SIZE, TextTokenizer

DEPLOYED_FILE = "deployed.safetensors"
SPARSE_FILE = "sparse.safetensors"

# run config.stage -> config -> (module -> module): the structure that stage trained
RUN_STRUCTURES = {
    # exact=True: the bit-exact grouped product, whatever the run trained with (same parameters)
    "qat": lambda config: lambda m: quantize_model(m, config.quant.rules, exact=True),
    # pruned linears with their fixed masks (compress/prune.py), LSQ kept values
    "sparse": lambda config: sparse_structure(config.sparse.bits, config.sparse.group),
}


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
    """(AndesVL module, TextTokenizer) from a training workdir, a safetensors directory or a
    deployed model."""
    path = pathlib.Path(path)
    if (path / "checkpoints").is_dir() and (path / RUN_CONFIG).is_file():
        config = load_run_config(path)
        structure = RUN_STRUCTURES.get(config.get("stage"))
        return (
            trained_model(config, path, structure and structure(config)),
            run_tokenizer(config),
        )
    deployed = path / DEPLOYED_FILE if path.is_dir() else path
    if is_deployed_file(deployed):
        model = set_kernel_impl(load_deployed(deployed), "auto")  # served through the kernels
        return model, _checkpoint_tokenizer(deployed.parent, model.cfg.text.vocab_size)
    sparse = path / SPARSE_FILE if path.is_dir() else path
    if is_sparse_file(sparse):
        model = load_sparse(sparse, packed=True)
        return model, _checkpoint_tokenizer(sparse.parent, model.cfg.text.vocab_size)
    if any(path.glob("*.safetensors")):
        from andesvl_jax.convert.loader import load_checkpoint

        model, _ = load_checkpoint(path, overrides=overrides)
        return model, _checkpoint_tokenizer(path, model.cfg.text.vocab_size)
    raise FileNotFoundError(
        f"{path}: neither a training workdir ({RUN_CONFIG} + checkpoints/) nor a safetensors "
        f"checkpoint directory, nor a deployed ({DEPLOYED_FILE}) or sparse ({SPARSE_FILE}) model"
    )
