"""Sample -> Example: chat template + image preprocessing + per-stage loss mask, within the budgets.

An `Example` is one sequence ready to pack: token ids, which tokens are trained, and its
preprocessed images (in placeholder order). The encoder guarantees an Example fits one packed row
(<= max_tokens tokens, <= max_patches patches), downscaling images when needed (counted in
`Example.downscaled`); anything it cannot fix is a `DataError` naming the sample and the problem.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from andesvl_jax.data.chat import ChatTemplate, Piece
from andesvl_jax.data.errors import DataError, at_image
from andesvl_jax.data.preprocess import (
    ImageSpec,
    ProcessedImage,
    preprocess_image,
    preprocess_within_budget,
)
from andesvl_jax.data.sample import IMAGE_TAG, Sample
from andesvl_jax.data.tokenizer import TextTokenizer

# Loss-mask policies: which piece kinds are trained. Images (and their <img>/</img> wrappers) never.
LOSS_MASKS: dict[str, frozenset[str]] = {
    "all_text": frozenset({"template", "prompt", "answer", "document"}),  # joint pre-training
    "answer_only": frozenset({"answer", "document"}),  # multitask, SFT, MPO
    "none": frozenset(),  # prompts for generation (GRPO rollouts, evaluation)
}


@dataclasses.dataclass(frozen=True)
class EncodeSpec:
    """How samples become sequences for one stage.

    max_tokens / max_patches: the packed row budgets (one sample must fit one row).
    pixel_shuffle: 2x2 patch groups per LLM token (True) or one token per patch (False).
    """

    image: ImageSpec = ImageSpec()
    max_tokens: int = 8192
    max_patches: int = 4096
    loss_mask: str = "answer_only"
    pixel_shuffle: bool = True
    thinking: bool | None = None
    add_generation_prompt: bool = False

    @property
    def patches_per_token(self) -> int:
        return 4 if self.pixel_shuffle else 1


class Example(NamedTuple):
    """ids, trainable: [T]; images in placeholder order; downscaled = images shrunk to fit."""

    ids: np.ndarray
    trainable: np.ndarray
    images: list[ProcessedImage]
    origin: str
    downscaled: int = 0

    @property
    def num_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_patches(self) -> int:
        return sum(im.num_patches for im in self.images)


def _image_origin(sample: Sample, k: int) -> str:
    src = sample.images[k]
    return f"{sample.origin} image[{k}]" + (f" ({src})" if isinstance(src, str) else "")


class SampleEncoder:
    """Callable Sample -> Example for one stage (tokenizer + EncodeSpec)."""

    def __init__(self, tokenizer: TextTokenizer, spec: EncodeSpec):
        if spec.loss_mask not in LOSS_MASKS:
            raise ValueError(
                f"loss_mask {spec.loss_mask!r} unknown; expected one of {sorted(LOSS_MASKS)}"
            )
        self.tok, self.spec = tokenizer, spec
        self.template = ChatTemplate(tokenizer, spec.thinking)
        st = tokenizer.special_tokens
        self._img_start, self._img_end, self._pad = st.img_start, st.img_end, st.image_pad
        self._eos_doc = np.array([st.pad], np.int32)

    def pieces(self, sample: Sample) -> list[Piece]:
        if sample.kind == "document":
            text = "".join(m.content for m in sample.messages)
            return self.template.document_pieces(text) + [Piece("document", self._eos_doc)]
        return self.template.conversation_pieces(sample.messages, self.spec.add_generation_prompt)

    def _images(self, sample: Sample, patch_budget: int) -> tuple[list[ProcessedImage], int]:
        """Preprocess all images; if together they exceed the budget, shrink each proportionally."""
        spec = self.spec.image
        images = []
        for k, src in enumerate(sample.images):
            with at_image(k):
                images.append(preprocess_image(src, spec, _image_origin(sample, k)))
        total = sum(im.num_patches for im in images)
        if total <= patch_budget:
            return images, 0
        out, shrunk = [], 0
        for k, (src, im) in enumerate(zip(sample.images, images, strict=True)):
            share = max(4, (patch_budget * im.num_patches // total) // 4 * 4)
            with at_image(k):
                new, was = preprocess_within_budget(src, spec, share, _image_origin(sample, k))
            if new.num_patches > share:
                raise DataError(
                    sample.origin,
                    "image_over_budget",
                    f"image[{k}] needs {new.num_patches} patches even at the smallest size; "
                    f"budget {share}",
                    image=k,
                )
            out.append(new)
            shrunk += int(was)
        return out, shrunk

    def __call__(self, sample: Sample) -> Example:
        for i, m in enumerate(sample.messages):
            for text in (m.content, m.reasoning or ""):
                try:  # JSON's "\ud800" escapes give str that is not Unicode; tokenizers refuse it
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise DataError(
                        sample.origin, "bad_text", f"message {i} is not valid Unicode: {e}"
                    ) from None
        n_tags = sample.num_image_tags()
        if n_tags != len(sample.images):
            raise DataError(
                sample.origin,
                "image_tag_mismatch",
                f"{n_tags} {IMAGE_TAG} tags in the text but {len(sample.images)} images",
            )
        pieces = self.pieces(sample)
        text_tokens = sum(len(p.ids) for p in pieces) + 2 * len(sample.images)  # + <img>, </img>
        ppt = self.spec.patches_per_token
        token_room = self.spec.max_tokens - text_tokens
        if token_room < len(sample.images):  # each image needs at least one token
            raise DataError(
                sample.origin,
                "text_too_long",
                f"{text_tokens} text tokens (+ >= {len(sample.images)} image tokens) exceed "
                f"max_tokens={self.spec.max_tokens}",
            )
        patch_budget = min(self.spec.max_patches, token_room * ppt)
        images, shrunk = self._images(sample, patch_budget)
        mask_kinds = LOSS_MASKS[self.spec.loss_mask]
        ids, trainable = [], []
        for p in pieces:
            if p.kind == "image":
                n = images[p.image].num_patches // ppt
                seg = np.concatenate(
                    [[self._img_start], np.full(n, self._pad), [self._img_end]]
                ).astype(np.int32)
                ids.append(seg)
                trainable.append(np.zeros(len(seg), bool))
            else:
                ids.append(p.ids)
                trainable.append(np.full(len(p.ids), p.kind in mask_kinds))
        ids_arr = np.concatenate(ids) if ids else np.zeros(0, np.int32)
        if ids_arr.shape[0] < 2:
            raise DataError(sample.origin, "empty_sample", "fewer than 2 tokens after templating")
        return Example(
            ids_arr.astype(np.int32), np.concatenate(trainable), images, sample.origin, shrunk
        )


def answer_only_encoder(
    model_cfg, tokenizer: TextTokenizer, *, image_max_size: int, max_tokens: int, max_patches: int
) -> SampleEncoder:
    """The encoder that scores a model on a sample's final answer: the model's image preprocessing,
    loss mask on the answer tokens only (evaluation by teacher forcing)."""
    vision = model_cfg.vision
    spec = EncodeSpec(
        image=ImageSpec(vision.flavour, vision.patch_size, image_max_size),
        max_tokens=max_tokens,
        max_patches=max_patches,
        loss_mask="answer_only",
        pixel_shuffle=model_cfg.pixel_shuffle,
    )
    return SampleEncoder(tokenizer, spec)
