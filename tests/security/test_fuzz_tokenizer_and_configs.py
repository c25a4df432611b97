"""Hostile tokenizer.json files (data/tokenizer.py) and experiment config files (train/launch.py).

tokenizer.json: mutated bytes and mistyped fields of the embedded tokenizer; a TokenizerError naming
the file, or a tokenizer that encodes and decodes. Config files are the one input that is code run
on purpose (docs/security.md): one that raises on import, has a syntax error, lacks get_config or
gets a bad override exits with a message naming the file (and line) — never a bare traceback.
"""

from __future__ import annotations

import json

import pytest
from fuzzlib import examples, mutated, run_case
from hypothesis import given
from hypothesis import strategies as st

from andesvl_jax.data.tokenizer import DEFAULT_TOKENIZER_PATH, TextTokenizer, TokenizerError
from andesvl_jax.train.launch import load_config

SEED = DEFAULT_TOKENIZER_PATH.read_bytes()
SEED_JSON = json.loads(SEED)


def _use(path):
    tok = TextTokenizer.from_file(path)
    ids = tok.encode("<|im_start|>user\nhello 42<|im_end|>")
    tok.decode(ids)
    tok.special_tokens  # noqa: B018 - the lookup by name is part of loading
    return tok


@given(data=st.data())
@examples(120)
def test_hostile_tokenizer_json(tmp_path, data):
    path = tmp_path / "tokenizer.json"
    if data.draw(st.booleans()):
        blob = data.draw(mutated(SEED, max_ops=3))
    else:
        d = json.loads(SEED)
        key = data.draw(
            st.sampled_from(["model", "added_tokens", "decoder", "normalizer", "version"])
        )
        d[key] = data.draw(
            st.sampled_from(
                [None, 5, "x", [], {}, [{"id": -1, "content": 3}], {"type": "BPE", "vocab": 3}]
            )
        )
        blob = json.dumps(d).encode()
    path.write_bytes(blob)
    run_case(
        "tokenizer_json",
        lambda: _use(path),
        where="tokenizer.json",
        errors=(TokenizerError, FileNotFoundError),
    )


CONFIG_BODIES = [
    "raise RuntimeError('boom at import')\n",
    "def get_config(arg=None):\n    return 1 / 0\n",
    "def get_config(\n",  # syntax error
    "x = 1\n",  # no get_config
    "import ml_collections\ndef get_config(arg=None):\n    return 5\n",
    "import os\ndef get_config(arg=None):\n    raise KeyError('missing')\n",
    "import sys\nsys.exit(3)\n",
    "import ml_collections\ndef get_config(arg=None):\n"
    "    return ml_collections.ConfigDict({'a': {'b': 1}})\n",
    "\xff\xfe not utf-8",
    "import this_module_does_not_exist\n",
    "def get_config(arg=None):\n    return get_config(arg)\n",  # RecursionError
]
OVERRIDES = [[], ["--config.a.b=2"], ["--config.a.b=notanint"], ["--config.zzz=1"], ["--config"]]


@given(
    body=st.sampled_from(CONFIG_BODIES),
    arg=st.sampled_from(["", ":x=1", ":"]),
    overrides=st.sampled_from(OVERRIDES),
)
@examples(60)
def test_hostile_experiment_configs(tmp_path, body, arg, overrides):
    path = tmp_path / "exp_cfg.py"
    path.write_bytes(body.encode("latin-1") if body.startswith("\xff") else body.encode())
    run_case(
        "experiment_config",
        lambda: load_config(f"{path}{arg}", overrides),
        where="exp_cfg.py",
        errors=(SystemExit,),
    )


def test_config_that_raises_names_file_and_line(tmp_path):
    path = tmp_path / "boom.py"
    path.write_text(
        "import ml_collections\n\n\ndef get_config(arg=None):\n    raise ValueError('x')\n"
    )
    with pytest.raises(SystemExit, match=r"boom\.py:5: the config file raised ValueError: x"):
        load_config(str(path), [])
