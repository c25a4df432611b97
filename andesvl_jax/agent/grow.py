"""`grow_workdir`: a trained run -> a new workdir whose model and tokenizer hold the functional tokens.

The output is an ordinary training workdir (config.json, tokenizer.json, checkpoints/0), so the
`functional` stage starts from it with `init.from_stage_workdir` and every reader of workdirs
(chat, eval, export) loads it unchanged. A character-level tokenizer (the embedded one) first gets
the corpus's Chinese characters on its reserved ids (`vocab.with_characters`); a real tokenizer
(Qwen3's tokenizer.json) must already cover them.
"""

from __future__ import annotations

import json
import pathlib

from flax import nnx

from andesvl_jax.agent.corpus import corpus_characters
from andesvl_jax.agent.functions import FunctionRegistry
from andesvl_jax.agent.vocab import (
    VocabularyError,
    add_functional_tokens,
    check_coverage,
    grow_model,
    with_characters,
)
from andesvl_jax.convert.workdir import RUN_CONFIG, load_run_config, run_tokenizer, trained_model
from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.train.checkpoint import Checkpointer

AGENT_FILE = "agent.json"  # which functions, which ids: written next to the grown model


def covering_tokenizer(tok: TextTokenizer, chars: str) -> TextTokenizer:
    """`tok`, or a character-level `tok` extended to cover `chars`."""
    try:
        check_coverage(tok, [chars], "agent corpus")
        return tok
    except VocabularyError:
        return with_characters(tok, chars)


def save_model_workdir(model, config, tok: TextTokenizer, out: pathlib.Path) -> None:
    """Write `model` as step 0 of a workdir with run config `config` and tokenizer `tok`."""
    out.mkdir(parents=True, exist_ok=True)
    tok_path = out / "tokenizer.json"
    atomic_write_text(tok_path, tok.tokenizer.to_str())
    config.data.tokenizer = str(tok_path.absolute())
    config.model.text.vocab_size = model.cfg.text.vocab_size
    atomic_write_text(out / RUN_CONFIG, config.to_json_best_effort(indent=2))
    _, llm, rest = nnx.split(model, lambda path, _: bool(path) and path[0] == "llm", ...)
    ckpt = Checkpointer(out / "checkpoints", keep=1, async_save=False)
    try:
        ckpt.save(0, {"params": llm, "frozen": rest}, {}, force=True)
    finally:
        ckpt.close()


def grow_workdir(
    source: str | pathlib.Path,
    out: str | pathlib.Path,
    registry: FunctionRegistry,
    *,
    functions_file: str | None = None,
    tie_head: bool = True,
) -> dict:
    """Grow the latest model of the run in `source` into `out`; -> the agent.json record."""
    source, out = pathlib.Path(source), pathlib.Path(out)
    config = load_run_config(source)
    model = trained_model(config, source)
    tok = covering_tokenizer(run_tokenizer(config), corpus_characters())
    tok = add_functional_tokens(tok, registry)
    grown = grow_model(model, tok, registry, tie_head=tie_head)
    config.agent = config.get("agent") or {}
    save_model_workdir(grown, config, tok, out)
    record = {
        "source": str(source.absolute()),
        "functions": functions_file,
        "function_names": registry.names,
        "first_functional_id": tok.token_id("<nexa_0>"),
        "vocab_size": grown.cfg.text.vocab_size,
        "tokenizer": str((out / "tokenizer.json").absolute()),
    }
    atomic_write_text(out / AGENT_FILE, json.dumps(record, indent=2))
    return record
