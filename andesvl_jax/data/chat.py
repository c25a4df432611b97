"""AndesVL chat format: messages -> token pieces tagged by kind (template/prompt/answer/image).

`<|im_start|>{role}\n{content}<|im_end|>\n` per message; generation prompt `<|im_start|>assistant\n`
(+ `<think>` for a thinking generation). Assistant content in the thinking variant is
`<think>\n{reasoning}\n</think>\n\n{answer}`; the no-thinking variant of a Thinking model writes an
empty think block (Qwen3 convention) so one model can switch modes. Each image becomes
`<img>` + `<|vision_pad|>` x N + `</img>`. GUI boxes are `<|box_start|>(x1,y1),(x2,y2)<|box_end|>`
on a 0-1000 scale of the image (written and read by data/boxes.py); referred objects
`<|object_ref_start|>..<|object_ref_end|>`.
Piece kinds are what loss masks select on (see encode.LOSS_MASKS).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from andesvl_jax.data.sample import IMAGE_TAG, Message
from andesvl_jax.data.tokenizer import TextTokenizer

ROLES = ("system", "user", "assistant")


class Piece(NamedTuple):
    """A run of tokens of one kind. kind: 'template' | 'prompt' | 'answer' | 'document' | 'image'.

    For kind 'image', ids is empty and `image` is the image's index in the sample.
    """

    kind: str
    ids: np.ndarray
    image: int = -1


def format_ref(text: str) -> str:
    return f"<|object_ref_start|>{text}<|object_ref_end|>"


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# What the generation prompt opens the answer with: Instruct, thinking on, thinking off (empty block).
THINK_OPENERS = {None: "", True: THINK_OPEN, False: f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n"}


class ChatTemplate:
    """Builds token pieces for messages.

    thinking: None (Instruct), True or False (Thinking model).
    """

    def __init__(self, tokenizer: TextTokenizer, thinking: bool | None = None):
        self.tok, self.thinking = tokenizer, thinking
        st = tokenizer.special_tokens
        self._im_start, self._im_end = (
            np.array([st.im_start], np.int32),
            np.array([st.im_end], np.int32),
        )
        self._nl = tokenizer.encode("\n")

    def assistant_text(self, msg: Message) -> str:
        """The assistant content as trained, with the think block of the chosen variant."""
        if self.thinking is None:
            return msg.content
        reasoning = (msg.reasoning or "").strip() if self.thinking else ""
        inner = f"\n{reasoning}\n" if reasoning else "\n\n"
        return f"<think>{inner}</think>\n\n{msg.content}"

    def content_pieces(self, text: str, kind: str, first_image: int) -> list[Piece]:
        """Split text at IMAGE_TAG into text pieces of `kind` and image pieces.

        Images are numbered from first_image.
        """
        pieces, parts = [], text.split(IMAGE_TAG)
        for i, part in enumerate(parts):
            if i:
                pieces.append(Piece("image", np.zeros(0, np.int32), first_image + i - 1))
            if part:
                pieces.append(Piece(kind, self.tok.encode(part)))
        return pieces

    def message_pieces(self, msg: Message, first_image: int) -> list[Piece]:
        if msg.role not in ROLES:
            raise ValueError(f"role {msg.role!r} not one of {ROLES}")
        is_answer = msg.role == "assistant"
        content = self.assistant_text(msg) if is_answer else msg.content
        out = [
            Piece("template", np.concatenate([self._im_start, self.tok.encode(msg.role), self._nl]))
        ]
        out += self.content_pieces(content, "answer" if is_answer else "prompt", first_image)
        # <|im_end|> is what the model must emit to stop, so it belongs to the answer.
        out.append(Piece("answer" if is_answer else "template", self._im_end))
        out.append(Piece("template", self._nl))
        return out

    def conversation_pieces(
        self, messages: list[Message], add_generation_prompt: bool = False
    ) -> list[Piece]:
        """All pieces of a conversation; images numbered in tag order across messages."""
        pieces, n_images = [], 0
        for msg in messages:
            pieces += self.message_pieces(msg, n_images)
            n_images += msg.content.count(IMAGE_TAG)
        if add_generation_prompt:
            pieces.append(Piece("template", self.tok.encode(self.generation_prompt())))
        return pieces

    def generation_prompt(self) -> str:
        """Opens the assistant turn. A Thinking model opens `<think>` to reason, or writes the empty
        think block `assistant_text` trains for no-thinking answers; Instruct opens nothing."""
        return "<|im_start|>assistant\n" + THINK_OPENERS[self.thinking]

    def document_pieces(self, text: str) -> list[Piece]:
        """An interleaved document: plain text and images, no template."""
        return self.content_pieces(text, "document", 0)
