"""The one in-memory sample type every reader and the synthetic corpus produce.

Images are referenced in text by the tag IMAGE_TAG ("<image>", the LLaVA convention); the k-th tag
(over all messages, in order) is `images[k]`. `kind` picks how the sample becomes tokens:
'chat' (AndesVL chat template) or 'document' (plain interleaved text, no template).
"""

from __future__ import annotations

import dataclasses
from typing import Any

IMAGE_TAG = "<image>"


@dataclasses.dataclass
class Message:
    role: str  # 'system' | 'user' | 'assistant'
    content: str  # may contain IMAGE_TAG
    reasoning: str | None = None  # assistant chain of thought (thinking variant)


@dataclasses.dataclass
class Sample:
    """A conversation or interleaved document with its images.

    images: anything `images.load_rgb` takes (path, bytes, PIL image, uint8 array).
    meta: task facts used for checking answers (answer, choices, boxes, difficulty,
      chosen/rejected).
    origin: where the sample came from, for error messages ("data.jsonl:17", "synthetic:count:3").
    """

    messages: list[Message]
    images: list[Any] = dataclasses.field(default_factory=list)
    kind: str = "chat"
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    origin: str = "<sample>"

    def num_image_tags(self) -> int:
        return sum(m.content.count(IMAGE_TAG) for m in self.messages)

    @property
    def prompt(self) -> list[Message]:
        """Every message before the last assistant turn (what a generator is given)."""
        last = max(
            (i for i, m in enumerate(self.messages) if m.role == "assistant"),
            default=len(self.messages),
        )
        return self.messages[:last]

    @property
    def answer(self) -> str | None:
        """The final assistant message's content, if any."""
        for m in reversed(self.messages):
            if m.role == "assistant":
                return m.content
        return None
