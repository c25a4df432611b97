"""TFDS datasets a user has prepared (`tfds.data_source`, random access, no TensorFlow needed).

Features are mapped to a one-turn VQA Sample by key names: `image_key` (one image array or a list),
`question_key`, `answer_key`; a record without a question becomes a caption sample.
"""

from __future__ import annotations

import numpy as np

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.sample import IMAGE_TAG, Message, Sample


def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return _text(v.item())
    return str(v)


class TfdsSource:
    """Random-access Samples from `tfds.data_source(name, split=..., data_dir=...)`."""

    def __init__(
        self,
        name: str,
        split: str = "train",
        data_dir: str | None = None,
        image_key: str = "image",
        question_key: str = "question",
        answer_key: str = "answer",
    ):
        self.args = dict(
            name=name,
            split=split,
            data_dir=data_dir,
            image_key=image_key,
            question_key=question_key,
            answer_key=answer_key,
        )
        import tensorflow_datasets as tfds

        self._source = tfds.data_source(name, split=split, data_dir=data_dir)

    def __len__(self) -> int:
        return len(self._source)

    def locate(self, index: int) -> dict:
        """Where record `index` lives: {"file": "tfds:name/split", "record": index in the split}."""
        return {"file": f"tfds:{self.args['name']}/{self.args['split']}", "record": index}

    def __getitem__(self, index: int) -> Sample:
        a = self.args
        origin = f"tfds:{a['name']}/{a['split']}#{index}"
        rec = self._source[index]
        if not isinstance(rec, dict):
            raise DataError(origin, "malformed_record", f"a {type(rec).__name__}, not a dict")
        if a["image_key"] not in rec or a["answer_key"] not in rec:
            raise DataError(
                origin,
                "missing_field",
                f"needs {a['image_key']!r} and {a['answer_key']!r}; has {sorted(rec)}",
            )
        images = rec[a["image_key"]]
        images = (
            list(images)
            if isinstance(images, list) or (isinstance(images, np.ndarray) and images.ndim == 4)
            else [images]
        )
        try:
            question = (
                _text(rec[a["question_key"]]) if a["question_key"] in rec else "Describe the image."
            )
            answer = _text(rec[a["answer_key"]])
        except UnicodeDecodeError as e:
            raise DataError(origin, "bad_field", f"text feature is not UTF-8: {e}") from None
        arrays = []
        for i, im in enumerate(images):
            im = np.asarray(im)
            if im.dtype != np.uint8 or im.ndim not in (2, 3):  # no silent casts (float, int64)
                raise DataError(
                    origin,
                    "bad_image_array",
                    f"feature {a['image_key']!r}[{i}]: expected uint8 [H,W] or [H,W,C], "
                    f"got {im.dtype} {im.shape}",
                    image=i,
                )
            arrays.append(im)
        tags = IMAGE_TAG * len(images)
        return Sample(
            [Message("user", f"{tags}\n{question}"), Message("assistant", answer)],
            arrays,
            origin=origin,
        )

    def __getstate__(self):
        return self.args

    def __setstate__(self, state):
        self.__init__(**state)
