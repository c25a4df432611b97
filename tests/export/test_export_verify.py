"""`andesvl-jax export gguf` + `export verify` end to end on the official fixture: the f32 export
passes (top-1 agreement 1.0, logit error under 1e-4) and prints the table; a runtime that is not
installed is a clear "pip install" error; a bad prompts file names its line."""

import json

import pytest
from andesvl_jax.export.verify import VerifyError, read_prompts, runtime_module
from gguf_testing import require_llama_cpp

from andesvl_jax.cli import main


def test_export_then_verify_passes(fixtures_dir, tmp_path, capsys):
    require_llama_cpp()
    src, out = fixtures_dir / "andesvl_siglip2_tiny", tmp_path / "gguf"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"set": s, "prompt": p}) for s, p in
                  [("en", "Hello there"), ("code", "def f(x):")])
    )  # fmt: skip
    assert main(["export", "gguf", "--checkpoint", str(src), "--out", str(out)]) == 0
    assert "model.gguf" in capsys.readouterr().out
    rc = main(["export", "verify", str(out), "--checkpoint", str(src), "--prompts", str(prompts),
               "--max-new-tokens", "4"])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "| en | 1 |" in text and "| code | 1 |" in text and "PASS" in text
    assert "logit tol 0.0001" in text
    with pytest.raises(Exception, match="--overwrite"):
        main(["export", "gguf", "--checkpoint", str(src), "--out", str(out)])


def test_missing_runtime_says_what_to_install(monkeypatch):
    import andesvl_jax.export.verify as verify

    monkeypatch.setitem(verify.RUNTIMES, ".gguf", "andesvl_jax.export.no_such_runtime")
    with pytest.raises(VerifyError, match=r"pip install llama-cpp-python==0.3.36"):
        runtime_module(".gguf")
    with pytest.raises(VerifyError, match=r"no runtime for '.onnx'"):
        runtime_module(".onnx")


def test_bad_prompts_file_names_the_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"set": "a", "prompt": "x"}\n{"set": "a"}\n')
    with pytest.raises(VerifyError, match=r"p.jsonl:2"):
        read_prompts(str(bad))


def test_greedy_identity_counts_a_runtime_that_stops_at_a_stop_token():
    from andesvl_jax.export.verify import same_until_stop

    stops = {9}
    assert same_until_stop([1, 2, 3], [1, 2, 3], stops)
    assert same_until_stop([1, 2], [1, 2, 9, 4, 4], stops)  # stopped where we emitted the stop
    assert same_until_stop([1, 2, 9], [1, 2, 9, 4], stops)  # kept the stop token
    assert not same_until_stop([1, 2], [1, 2, 5, 9], stops)  # stopped early without a stop
    assert not same_until_stop([1, 3], [1, 2, 9], stops)
