"""llama.cpp (llama-cpp-python's C API) as an `export verify` runtime for `.gguf` files.

`LlamaCpp` holds one model and one context, set up for parity with our engine: flash attention off
and an f32 KV cache (with llama.cpp's defaults, auto flash attention and f16 KV, logits move by
~1e-2 and near-tie argmaxes flip; DESIGN §10), one batch = the whole context, logits for every
position. CPU weight repacking (`use_extra_bufts`, faster Q4_0/Q8_0 kernels) is off by default: in
llama-cpp-python 0.3.36 on this machine it crashes (segfault / general protection fault in
libggml-cpu) decoding Q8_0/Q4_0 files, both the tiny test models and the 0.6B shape; `repack=True`
turns it on where it works. Inputs are token ids or embedding rows
(`llama_batch.embd`, how image embeddings enter). LoRA adapters load from GGUF adapter files and are
set with scales (`llama_set_adapters_lora`, several at once: the 1+N case).

Runner interface (export/verify.py): `open_runner(path, checkpoint_dir) -> LlamaCpp` with `name`,
`greedy(prompt_ids, max_new_tokens)` and `logits(prompt_ids)`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pathlib
import weakref

import numpy as np

try:
    import llama_cpp
except ImportError as e:  # verify's registry turns this into a "pip install" message
    raise ImportError(
        "the GGUF runtime needs llama-cpp-python: pip install llama-cpp-python==0.3.36"
    ) from e

logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load chatter
FLASH_ATTN_DISABLED = 0
GGML_TYPE_F32 = 0


class RuntimeFailure(RuntimeError):
    """llama.cpp refused a file or a batch (the message names which)."""


class LlamaCpp:
    """One llama.cpp model + context (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        n_ctx: int = 512,
        n_threads: int | None = None,
        vocab_only: bool = False,
        repack: bool = False,
    ):
        llama_cpp.llama_backend_init()
        self.path = pathlib.Path(path)
        self.name = f"llama.cpp ({self.path.name})"
        self.ctx = None
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0
        mparams.vocab_only = vocab_only
        mparams.use_extra_bufts = repack  # CPU weight repacking: crashes here
        self.model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self.model:
            raise RuntimeFailure(f"{self.path}: llama.cpp could not load this GGUF model")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.adapters: dict[str, object] = {}
        self.logit_tolerance: float | None = None
        if vocab_only:  # a tokenizer only (no weights, no context)
            self._release = weakref.finalize(self, _releaser(self.model, None))
            return
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = n_ctx
        cparams.flash_attn_type = FLASH_ATTN_DISABLED
        cparams.type_k = cparams.type_v = GGML_TYPE_F32
        cparams.n_threads = cparams.n_threads_batch = n_threads or default_threads(self.model)
        cparams.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise RuntimeFailure(f"{self.path}: llama.cpp could not create a context")
        self._release = weakref.finalize(self, _releaser(self.model, self.ctx))
        self.n_ctx = n_ctx
        self.n_embd = llama_cpp.llama_model_n_embd(self.model)

    # -- inputs ---------------------------------------------------------------------------------
    def tokenize(self, text: str, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        buf = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), buf, len(buf), False, parse_special
        )
        if n < 0:
            raise RuntimeFailure(f"{self.path}: tokenize needs {-n} slots")
        return list(buf[:n])

    def _run(self, start: int, ids=None, embeds=None, want_all: bool = True) -> np.ndarray:
        """Decode a chunk at positions start.. (ids [T] or embeds [T, d]); logits [T or 1, V]."""
        t = len(ids) if ids is not None else embeds.shape[0]
        if start + t > self.n_ctx:
            raise RuntimeFailure(f"{t} tokens at position {start} exceed the context {self.n_ctx}")
        batch = llama_cpp.llama_batch_init(t, 0 if embeds is None else self.n_embd, 1)
        try:
            if embeds is not None:
                flat = np.ascontiguousarray(embeds, np.float32).reshape(-1)
                ctypes.memmove(batch.embd, flat.ctypes.data, flat.nbytes)
            for j in range(t):
                if ids is not None:
                    batch.token[j] = int(ids[j])
                batch.pos[j] = start + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = want_all or j == t - 1
            batch.n_tokens = t
            rc = llama_cpp.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeFailure(f"{self.path}: llama_decode returned {rc}")
            rows = t if want_all else 1
            first = 0 if want_all else t - 1
            out = np.empty((rows, self.n_vocab), np.float32)
            for r in range(rows):
                ptr = llama_cpp.llama_get_logits_ith(self.ctx, first + r)
                out[r] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
            return out
        finally:
            llama_cpp.llama_batch_free(batch)

    def reset(self) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)

    # -- the Runner interface -------------------------------------------------------------------
    def logits(self, prompt_ids) -> np.ndarray:
        """[len(prompt_ids), vocab] float32 logits of one fresh sequence."""
        self.reset()
        return self._run(0, ids=list(prompt_ids))

    def embeds_logits(self, embeds: np.ndarray) -> np.ndarray:
        """[T, vocab] logits of a fresh sequence given as embedding rows embeds [T, d]."""
        self.reset()
        return self._run(0, embeds=np.asarray(embeds, np.float32))

    def greedy(self, prompt_ids, max_new_tokens: int, stop_ids=()) -> list[int]:
        """Greedy continuation of `prompt_ids` (argmax; ties to the lowest id like np.argmax)."""
        self.reset()
        ids = list(prompt_ids)
        return self._continue(
            self._run(0, ids=ids, want_all=False)[-1], len(ids), max_new_tokens, stop_ids
        )

    def greedy_embeds(self, embeds: np.ndarray, max_new_tokens: int, stop_ids=()) -> list[int]:
        """Greedy continuation of a prompt given as embedding rows [T, d] (image tokens merged)."""
        self.reset()
        last = self._run(0, embeds=np.asarray(embeds, np.float32), want_all=False)[-1]
        return self._continue(last, len(embeds), max_new_tokens, stop_ids)

    def _continue(self, logits: np.ndarray, pos: int, max_new_tokens: int, stop_ids) -> list[int]:
        out = []
        for _ in range(max_new_tokens):
            nxt = int(np.argmax(logits))
            out.append(nxt)
            if nxt in stop_ids or pos >= self.n_ctx - 1 or len(out) == max_new_tokens:
                break
            logits = self._run(pos, ids=[nxt], want_all=False)[-1]
            pos += 1
        return out

    # -- LoRA adapters --------------------------------------------------------------------------
    def load_adapter(self, name: str, path: str | os.PathLike) -> None:
        adapter = llama_cpp.llama_adapter_lora_init(self.model, str(path).encode())
        if not adapter:
            raise RuntimeFailure(f"{path}: llama.cpp could not load this LoRA adapter")
        self.adapters[name] = adapter

    def set_adapters(self, scales: dict[str, float]) -> None:
        """Apply the named adapters with their scales (empty: the bare base)."""
        n = len(scales)
        arr = (llama_cpp.llama_adapter_lora_p_ctypes * max(n, 1))(
            *[self.adapters[k] for k in scales]
        )
        sc = (ctypes.c_float * max(n, 1))(*scales.values())
        rc = llama_cpp.llama_set_adapters_lora(self.ctx, arr if n else None, n, sc if n else None)
        if rc != 0:
            raise RuntimeFailure(f"llama_set_adapters_lora returned {rc}")

    def close(self) -> None:
        self._release()


def default_threads(model) -> int:
    """One thread for a small model (width < 512: a second thread only adds barrier waits, and on a
    busy shared CPU spinning threads cost 50x: 710 vs 14 tok/s measured on the tiny demo model);
    every core otherwise."""
    return 1 if llama_cpp.llama_model_n_embd(model) < 512 else (os.cpu_count() or 1)


def _releaser(model, ctx):
    """Frees the context then the model; registered with weakref.finalize (runs once, also at
    interpreter exit, before the bindings are torn down)."""

    def release():
        if ctx:
            llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)

    return release


def all_f32(path: str | os.PathLike) -> bool:
    """Whether every tensor of the GGUF is F32 (its header's file type can say F32 while deployed
    linears are stored as Q4_0 / Q8_0 blocks)."""
    import gguf  # noqa: PLC0415

    return all(
        t.tensor_type == gguf.GGMLQuantizationType.F32 for t in gguf.GGUFReader(path).tensors
    )


def open_runner(path: str | os.PathLike, checkpoint_dir=None, n_ctx: int = 512) -> LlamaCpp:
    """The verify Runner for a `.gguf` model file (checkpoint_dir is unused: the file is whole).
    An all-f32 file must match our logits to 1e-4 relative; quantized files only by agreement."""
    runner = LlamaCpp(path, n_ctx=n_ctx)
    runner.logit_tolerance = 1e-4 if all_f32(path) else None
    return runner
