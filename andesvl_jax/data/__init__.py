"""Data pipeline: official preprocessing, NaViT packing, tokenizer + chat template, synthetic
corpus, real formats and grain pipelines per stage. See docs/data.md."""

from andesvl_jax.data.batch import TrainBatch, packing_efficiency
from andesvl_jax.data.encode import LOSS_MASKS, EncodeSpec, Example, SampleEncoder
from andesvl_jax.data.errors import DataError, Skipped
from andesvl_jax.data.formats import FORMATS, open_dataset
from andesvl_jax.data.patches import PackedImages, pack_images, patchify_2x2
from andesvl_jax.data.pipeline import (
    DATA_STAGES,
    DataConfig,
    make_dataset,
    pipeline_stats,
    restore_iterator_state,
    save_iterator_state,
    synthetic_dataset,
)
from andesvl_jax.data.preprocess import ImageSpec, preprocess_image
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.tokenizer import TextTokenizer

__all__ = [
    "FORMATS",
    "LOSS_MASKS",
    "DATA_STAGES",
    "DataConfig",
    "DataError",
    "EncodeSpec",
    "Example",
    "ImageSpec",
    "Message",
    "PackedImages",
    "Sample",
    "SampleEncoder",
    "Skipped",
    "TextTokenizer",
    "TrainBatch",
    "make_dataset",
    "open_dataset",
    "pack_images",
    "packing_efficiency",
    "patchify_2x2",
    "pipeline_stats",
    "preprocess_image",
    "restore_iterator_state",
    "save_iterator_state",
    "synthetic_dataset",
]
