"""libmtmd (llama.cpp's multimodal library, `llama_cpp.mtmd_cpp`) running an exported mmproj.gguf.

`MtmdVision` loads OUTDIR/mmproj.gguf next to an `LlamaCpp` model and turns an image into the LLM's
image embeddings the way llama.cpp does it: bitmap -> `mtmd_tokenize` (llama.cpp's own resize and
normalisation, then the image chunk) -> `mtmd_encode_chunk` -> `mtmd_get_output_embd`. Feed the
AndesVL canvas (data/preprocess.py `make_canvas`, uint8 [H, W, 3]): its sides are multiples of
2 x patch, so llama.cpp's resize is a no-op (checked: the chunk's token grid must equal the canvas's,
else an error). Token limits are opened (image_min/max_tokens) so no canvas size is rescaled, and
flash attention is off (it would cast K/V to F16).

`mtmd_tokenize` tokenizes the graph's image markers with the LLM's vocabulary; a model exported with
`tokenizer.ggml.model = none` (the tiny character-level tokenizer) has none, so for it a vocab-only
companion GGUF (the LLM's hyper-parameters, the two markers as control tokens at our <img> /
</img> ids, every other id unused) is written to a temporary directory for libmtmd's marker lookup.

`greedy` answers a prompt of our token ids whose `<|vision_pad|>` runs are replaced, in order, by
the images' libmtmd embeddings: text runs go to llama.cpp as ids, image runs as embedding rows
(llama_batch.embd) at consecutive positions, as libmtmd's helper does for a 1-D-RoPE LLM (the path
for a `none` tokenizer). `greedy_text` is llama.cpp's whole multimodal path for a model with a real
tokenizer: a text prompt with media markers -> `mtmd_tokenize` -> `mtmd_helper_eval_chunks`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import tempfile
import weakref

import gguf
import numpy as np
from andesvl_jax.export.gguf_mmproj import MARKERS
from andesvl_jax.export.gguf_runtime import LlamaCpp, RuntimeFailure, default_threads

try:
    import llama_cpp
    from llama_cpp import mtmd_cpp
except ImportError as e:
    raise ImportError(
        "the mmproj runtime needs llama-cpp-python: pip install llama-cpp-python==0.3.36"
    ) from e

FLASH_ATTN_DISABLED = 0
GGML_LOG_LEVEL_ERROR = 4
MAX_IMAGE_TOKENS = 1 << 19  # no canvas is rescaled for size (the AndesVL canvas is final)


@llama_cpp.llama_log_callback
def _errors_only(level, text, user_data):  # libmtmd's load/encode chatter goes to stderr otherwise
    if level >= GGML_LOG_LEVEL_ERROR:
        os.write(2, text)


mtmd_cpp.mtmd_log_set(_errors_only, None)


def companion_vocab(llm_path: pathlib.Path, marker_ids: tuple[int, int], out: pathlib.Path):
    """A vocab-only GGUF: the LLM's metadata but a `gpt2` vocabulary whose only tokens are the
    image markers (control) at `marker_ids` -- for libmtmd's marker tokenization only."""
    reader = gguf.GGUFReader(llm_path)
    arch = str(reader.fields["general.architecture"].contents())
    n_vocab = int(reader.fields[f"{arch}.vocab_size"].contents())
    writer = gguf.GGUFWriter(str(out), arch)
    for key, field in reader.fields.items():
        if key.startswith(f"{arch}.") and not key.endswith(".vocab_size"):
            value = field.contents()
            vtype = field.types[0]
            if vtype == gguf.GGUFValueType.ARRAY:
                writer.add_array(key, value)
            else:
                writer.add_key_value(key, value, vtype)
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for i, text in zip(marker_ids, MARKERS, strict=True):
        tokens[i], types[i] = text, gguf.TokenType.CONTROL
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges(["[ P"])  # llama.cpp requires a merge list; nothing is ever merged
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


class MtmdVision:
    """An mmproj.gguf in libmtmd beside `llm` (see the module docstring)."""

    def __init__(
        self,
        llm: LlamaCpp,
        mmproj: str | os.PathLike,
        marker_ids: tuple[int, int] | None = None,
        n_threads: int | None = None,
    ):
        self.llm, self.path = llm, pathlib.Path(mmproj)
        text_model, self._companion = llm.model, None
        if llama_cpp.llama_vocab_type(llm.vocab) == llama_cpp.LLAMA_VOCAB_TYPE_NONE:
            if marker_ids is None:
                raise RuntimeFailure(
                    f"{llm.path}: tokenizer 'none'; pass marker_ids (our <img>, </img> ids)"
                )
            self._tmp = tempfile.TemporaryDirectory(prefix="mtmd-vocab-")
            companion = pathlib.Path(self._tmp.name) / "vocab.gguf"
            companion_vocab(llm.path, marker_ids, companion)
            self._companion = LlamaCpp(companion, vocab_only=True)
            text_model = self._companion.model
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.warmup = False
        params.flash_attn_type = FLASH_ATTN_DISABLED
        params.n_threads = n_threads or default_threads(llm.model)
        params.image_min_tokens = 1
        params.image_max_tokens = MAX_IMAGE_TOKENS
        self.marker = mtmd_cpp.mtmd_default_marker()
        self.ctx = mtmd_cpp.mtmd_init_from_file(str(self.path).encode(), text_model, params)
        if not self.ctx:
            raise RuntimeFailure(f"{self.path}: libmtmd could not load this mmproj")
        self._release = weakref.finalize(self, mtmd_cpp.mtmd_free, self.ctx)
        self.name = f"llama.cpp+mtmd ({self.path.name})"

    @contextlib.contextmanager
    def _chunks(self, text: bytes, canvases, patch_size: int):
        """libmtmd's chunks of `text` (one media marker per canvas) and its image chunks, each
        checked to hold the canvas's token count (i.e. llama.cpp did not resize it)."""
        canvases = [np.ascontiguousarray(c, np.uint8) for c in canvases]
        ptr = ctypes.POINTER(ctypes.c_uint8)
        bitmaps = [
            mtmd_cpp.mtmd_bitmap_init(c.shape[1], c.shape[0], c.ctypes.data_as(ptr))
            for c in canvases
        ]
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        try:
            inp = mtmd_cpp.mtmd_input_text(text, len(text), False, True)
            array = (mtmd_cpp.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            rc = mtmd_cpp.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
            if rc != 0:
                raise RuntimeFailure(f"{self.path}: mtmd_tokenize returned {rc}")
            images = [
                chunk
                for chunk in map(
                    lambda i: mtmd_cpp.mtmd_input_chunks_get(chunks, i),
                    range(mtmd_cpp.mtmd_input_chunks_size(chunks)),
                )
                if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE
            ]
            for canvas, chunk in zip(canvases, images, strict=True):
                h, w, _ = canvas.shape
                n = mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)
                want = (h // (2 * patch_size)) * (w // (2 * patch_size))
                if h % (2 * patch_size) or w % (2 * patch_size) or n != want:
                    raise RuntimeFailure(
                        f"libmtmd made {n} image tokens of the {h}x{w} image (its resize ran; "
                        f"a canvas with sides multiples of {2 * patch_size} gives {want}): feed "
                        "the AndesVL canvas"
                    )
            yield chunks, images
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)
            for b in bitmaps:
                mtmd_cpp.mtmd_bitmap_free(b)

    def image_embeddings(self, canvas: np.ndarray, patch_size: int) -> np.ndarray:
        """canvas uint8 [H, W, 3] (sides multiples of 2*patch) -> [H*W/(2*patch)^2, d_llm]."""
        with self._chunks(self.marker, [canvas], patch_size) as (_, (chunk,)):
            if mtmd_cpp.mtmd_encode_chunk(self.ctx, chunk) != 0:
                raise RuntimeFailure(f"{self.path}: mtmd_encode_chunk failed")
            n = mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)
            out = np.ctypeslib.as_array(
                mtmd_cpp.mtmd_get_output_embd(self.ctx), (n, self.llm.n_embd)
            )
            return out.copy()

    def greedy_text(
        self, text: str, canvases, patch_size: int, max_new_tokens: int, stop_ids=()
    ) -> list[int]:
        """Greedy continuation of a text prompt with one `self.marker` per canvas, all in llama.cpp:
        `mtmd_tokenize` (the model's tokenizer; the graph's markers around each image) then
        `mtmd_helper_eval_chunks`. Needs the model's own tokenizer (not a `none` one)."""
        if self._companion is not None:
            raise RuntimeFailure(f"{self.llm.path}: tokenizer 'none' cannot tokenize text")
        self.llm.reset()
        with self._chunks(text.encode("utf-8"), canvases, patch_size) as (chunks, _):
            n_past = llama_cpp.llama_pos(0)
            rc = mtmd_cpp.mtmd_helper_eval_chunks(
                self.ctx, self.llm.ctx, chunks, 0, 0, self.llm.n_ctx, True, ctypes.byref(n_past)
            )
            if rc != 0:
                raise RuntimeFailure(f"{self.path}: mtmd_helper_eval_chunks returned {rc}")
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), (self.llm.n_vocab,)
        ).copy()
        return self.llm._continue(logits, n_past.value, max_new_tokens, stop_ids)

    def greedy(
        self, ids, image_pad: int, canvases, patch_size: int, max_new_tokens: int, stop_ids=()
    ) -> list[int]:
        """Greedy continuation of `ids` whose runs of `image_pad` take the canvases' embeddings."""
        ids = [int(t) for t in ids]
        runs, start = [], 0
        while start < len(ids):
            end = start
            while end < len(ids) and (ids[end] == image_pad) == (ids[start] == image_pad):
                end += 1
            runs.append((ids[start] == image_pad, start, end))
            start = end
        images = [r for r in runs if r[0]]
        if len(images) != len(canvases):
            raise RuntimeFailure(f"{len(images)} image placeholder runs but {len(canvases)} images")
        self.llm.reset()
        canvases = iter(canvases)
        for is_image, start, end in runs:
            if is_image:
                rows = self.image_embeddings(next(canvases), patch_size)
                if len(rows) != end - start:
                    raise RuntimeFailure(f"{end - start} placeholders but {len(rows)} image tokens")
                logits = self.llm._run(start, embeds=rows, want_all=False)
            else:
                logits = self.llm._run(start, ids=ids[start:end], want_all=False)
        return self.llm._continue(logits[-1], len(ids), max_new_tokens, stop_ids)

    def close(self) -> None:
        self._release()
        if self._companion is not None:
            self._companion.close()
            self._tmp.cleanup()
