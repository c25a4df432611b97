"""Embedded tokenizer, chat template vs the official prompts, loss masks, thinking, GUI boxes."""

import numpy as np
import pytest

from andesvl_jax.config import get_preset
from andesvl_jax.data.boxes import format_box, parse_boxes
from andesvl_jax.data.chat import ChatTemplate
from andesvl_jax.data.encode import LOSS_MASKS, EncodeSpec, SampleEncoder
from andesvl_jax.data.errors import DataError
from andesvl_jax.data.preprocess import ImageSpec
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.tokenizer import (
    DEFAULT_TOKENIZER_PATH,
    TextTokenizer,
    build_default_tokenizer,
)


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.default()


def test_shipped_asset_is_the_built_tokenizer(tok):
    assert DEFAULT_TOKENIZER_PATH.read_text() == build_default_tokenizer().to_str()
    assert tok.vocab_size == 512 == get_preset("tiny").text.vocab_size
    assert tok.special_tokens == get_preset("tiny").tokens


def test_character_level_ids(tok):
    assert list(tok.encode("Hi\n")) == [ord("H"), ord("i"), 10]
    assert tok.encode("\t")[0] == 0  # [UNK]
    ids = tok.encode("<|im_start|>三<|vision_pad|>")
    assert ids[0] == tok.special_tokens.im_start and ids[-1] == tok.special_tokens.image_pad
    assert tok.decode(tok.encode("What is 3 + 4?")) == "What is 3 + 4?"
    assert max(tok.encode("".join(chr(c) for c in range(32, 127)) + "一二三十")) < 512


def test_siglip2_fixture_prompt_reproduced(fixtures_dir, tok):
    """The official vLLM prompt, token for token.

    User turn, images joined by newlines, generation prompt.
    """
    d = np.load(fixtures_dir / "andesvl_siglip2_tiny" / "inputs.npz")
    sample = Sample(
        [Message("user", "<image>\n<image>\nDescribe both.")], [d["image_0"], d["image_1"]]
    )
    spec = EncodeSpec(
        image=ImageSpec("siglip2", 16, max_size=1792), add_generation_prompt=True, loss_mask="none"
    )
    ex = SampleEncoder(tok, spec)(sample)
    np.testing.assert_array_equal(ex.ids, d["input_ids"][0])
    assert not ex.trainable.any()


def test_aimv2_fixture_prompt_reproduced(fixtures_dir, tok):
    """The official HF chat() prompt (which appends the generation prompt twice)."""
    d = np.load(fixtures_dir / "andesvl_aimv2_tiny" / "inputs.npz")
    sample = Sample([Message("user", "<image><image>Describe both.")], [d["image_0"], d["image_1"]])
    ex = SampleEncoder(tok, EncodeSpec(add_generation_prompt=True))(sample)
    gen = tok.encode("<|im_start|>assistant\n")
    np.testing.assert_array_equal(np.concatenate([ex.ids, gen]), d["input_ids"][0])


def _conv():
    return Sample(
        [
            Message("system", "Be brief."),
            Message("user", "<image>\nHow many?"),
            Message("assistant", "3", reasoning="I count 3."),
        ],
        [np.zeros((56, 56, 3), np.uint8)],
    )


def _trained_text(tok, ex):
    return tok.decode(ex.ids[ex.trainable])


@pytest.mark.parametrize("policy", sorted(LOSS_MASKS))
def test_loss_mask_policies(tok, policy):
    ex = SampleEncoder(tok, EncodeSpec(loss_mask=policy))(_conv())
    st = tok.special_tokens
    image_tokens = np.isin(ex.ids, [st.img_start, st.img_end, st.image_pad])
    assert not ex.trainable[image_tokens].any()  # never images
    trained = _trained_text(tok, ex)
    expected = {"answer_only": "3<|im_end|>", "none": ""}
    if policy in expected:
        assert trained == expected[policy]
    else:
        assert "How many?" in trained and "Be brief." in trained and "3<|im_end|>" in trained


def test_thinking_variants(tok):
    s = _conv()
    think = ChatTemplate(tok, thinking=True).assistant_text(s.messages[-1])
    nothink = ChatTemplate(tok, thinking=False).assistant_text(s.messages[-1])
    assert think == "<think>\nI count 3.\n</think>\n\n3"
    assert nothink == "<think>\n\n</think>\n\n3"
    assert ChatTemplate(tok, thinking=None).assistant_text(s.messages[-1]) == "3"
    assert ChatTemplate(tok, thinking=True).generation_prompt().endswith("<think>")
    # no-thinking generation continues exactly where the trained no-thinking answer would
    prompt = ChatTemplate(tok, thinking=False).generation_prompt()
    assert prompt == "<|im_start|>assistant\n" + nothink.removesuffix("3")
    ex = SampleEncoder(tok, EncodeSpec(thinking=True))(s)
    assert _trained_text(tok, ex) == think + "<|im_end|>"


def test_box_format_roundtrip():
    text = format_box((10, 20, 50, 100), width=200, height=400)
    assert text == "<|box_start|>(50,50),(250,250)<|box_end|>"
    assert parse_boxes("tap " + text) == [(50, 50, 250, 250)]


def test_image_tokens_per_pixel_shuffle(tok):
    s = Sample([Message("user", "<image>hi")], [np.zeros((70, 98, 3), np.uint8)])
    pad = tok.special_tokens.image_pad
    on = SampleEncoder(tok, EncodeSpec(pixel_shuffle=True))(s)
    off = SampleEncoder(tok, EncodeSpec(pixel_shuffle=False))(s)
    assert (on.ids == pad).sum() == on.num_patches // 4 == 12
    assert (off.ids == pad).sum() == off.num_patches == 48


@pytest.mark.parametrize(
    "tags,images,reason",
    [
        ("<image><image>q", 1, "image_tag_mismatch"),
        ("q", 1, "image_tag_mismatch"),
        ("x" * 300, 0, "text_too_long"),
    ],
)
def test_encoder_errors(tok, tags, images, reason):
    s = Sample(
        [Message("user", tags)], [np.zeros((56, 56, 3), np.uint8)] * images, origin="f.jsonl:9"
    )
    with pytest.raises(DataError) as e:
        SampleEncoder(tok, EncodeSpec(max_tokens=256))(s)
    assert e.value.reason == reason and "f.jsonl:9" in str(e.value)


def test_images_downscaled_to_fit_row(tok):
    s = Sample([Message("user", "<image><image>q")], [np.zeros((600, 600, 3), np.uint8)] * 2)
    ex = SampleEncoder(tok, EncodeSpec(max_tokens=4096, max_patches=512))(s)
    assert ex.num_patches <= 512 and ex.downscaled == 2
