"""The `.litertlm` bundle: the prefill/decode `.tflite`, the HF tokenizer and `LlmMetadata`.

Written with `litert_lm_builder.LitertLmFileBuilder` (litert-lm-builder on PyPI). The metadata
carries our chat template (data/chat.py: `<|im_start|>{role}\\n{content}<|im_end|>\\n`, generation
prompt `<|im_start|>assistant\\n`) both as prompt affixes and as a Jinja template, the stop tokens
(`<|im_end|>`, `<|endoftext|>`), a greedy sampler and the context (`max_num_tokens`). Qwen3 has no
start token, so none is set.
"""

from __future__ import annotations

import pathlib
import tempfile

from andesvl_jax.data.tokenizer import TextTokenizer

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")

# Our chat format (data/chat.py, Instruct variant) for runtimes that render messages with Jinja.
JINJA_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def stop_token_ids(tokenizer: TextTokenizer) -> list[int]:
    """Ids of STOP_TOKENS present in the vocabulary (at least `<|im_end|>`)."""
    ids = [tokenizer.token_id(t) for t in STOP_TOKENS]
    if ids[0] is None:
        raise ValueError(f"tokenizer {tokenizer.name}: no {STOP_TOKENS[0]} token to stop on")
    return [i for i in ids if i is not None]


def llm_metadata(tokenizer: TextTokenizer, context: int):
    """The LlmMetadata proto for our Qwen3 chat model."""
    from litert_lm_builder.runtime.proto import llm_metadata_pb2, sampler_params_pb2

    meta = llm_metadata_pb2.LlmMetadata()
    for token in stop_token_ids(tokenizer):
        meta.stop_tokens.add().token_ids.ids.append(token)
    for role, name in (("user", "user"), ("model", "assistant"), ("system", "system")):
        affixes = getattr(meta.prompt_templates, role)
        affixes.prefix = f"<|im_start|>{name}\n"
        affixes.suffix = "<|im_end|>\n"
    meta.sampler_params.type = sampler_params_pb2.SamplerParameters.GREEDY
    meta.sampler_params.k = 1
    meta.max_num_tokens = context
    meta.llm_model_type.generic_model.SetInParent()
    meta.jinja_prompt_template = JINJA_TEMPLATE
    return meta


def write_bundle(
    out: pathlib.Path,
    tflite: bytes,
    tokenizer: TextTokenizer,
    context: int,
    vision: dict[str, bytes] | None = None,
) -> None:
    """Write the bundle to `out` (the caller makes it atomic). vision: section name
    (`tf_lite_vision_encoder` / `tf_lite_vision_adapter`) -> tflite bytes."""
    from litert_lm_builder import LitertLmFileBuilder, TfLiteModelType

    with tempfile.TemporaryDirectory(prefix="litertlm-") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "model.tflite").write_bytes(tflite)
        (tmp / "tokenizer.json").write_text(tokenizer.tokenizer.to_str())
        (tmp / "llm_metadata.pb").write_bytes(llm_metadata(tokenizer, context).SerializeToString())
        builder = LitertLmFileBuilder()
        builder.add_tflite_model(str(tmp / "model.tflite"), TfLiteModelType.PREFILL_DECODE)
        for section, data in (vision or {}).items():
            path = tmp / f"{section}.tflite"
            path.write_bytes(data)
            builder.add_tflite_model(str(path), TfLiteModelType(section))
        builder.add_hf_tokenizer(str(tmp / "tokenizer.json"))
        builder.add_llm_metadata(str(tmp / "llm_metadata.pb"))
        with open(out, "wb") as f:
            builder.build(f)
