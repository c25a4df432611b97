"""Run an exported `.litertlm` in the real runtimes, for `export verify` and the parity tests.

`open_runner(path, checkpoint_dir) -> LiteRTRunner`:
  * `greedy(prompt_ids, n)` runs the LiteRT-LM Engine (litert-lm-api, CPU). Its API takes and
    returns text only, so the prompt goes in as the checkpoint tokenizer's decoding of the ids
    (checked to tokenize back to the same ids by the bundled tokenizer, else ValueError) with the
    prompt template off, and the response text is tokenized back into ids. Ids that do not survive
    a decode/encode round trip (e.g. a random model's odd byte pieces) cannot be recovered this
    way: `signature_greedy` gives the exact ids from the same `.tflite`.
  * `logits(prompt_ids)` and `signature_greedy` run the bundle's prefill/decode signatures in the
    `ai_edge_litert` interpreter, exactly as the runtime calls them (prefill all but the last
    prompt token in chunks, the rest through `decode`).
"""

from __future__ import annotations

import pathlib

import numpy as np
from andesvl_jax.export.litert_graph import DECODE

from andesvl_jax.data.tokenizer import TextTokenizer

PREFILL_PREFIX = "prefill_"
TFLITE_SECTION = "tf_lite_prefill_decode"


def bundle_tflite(path: str | pathlib.Path, section: str = TFLITE_SECTION) -> bytes:
    """The bytes of one `.tflite` section of a `.litertlm` bundle."""
    import tempfile

    from litert_lm_builder import unpack_litertlm_file

    with tempfile.TemporaryDirectory(prefix="litertlm-unpack-") as tmp:
        unpack_litertlm_file(str(path), tmp)
        found = sorted(pathlib.Path(tmp).rglob("*.tflite"))
        named = [p for p in found if section in p.name]
        if not named:
            raise ValueError(
                f"{path}: no {section} section (has {[p.name for p in found]})"
            )
        return named[0].read_bytes()


class SignatureModel:
    """The prefill/decode signatures of one `.tflite` in the ai_edge_litert interpreter."""

    def __init__(self, tflite: bytes):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=tflite)
        sigs = self.interpreter.get_signature_list()
        if DECODE not in sigs:
            raise ValueError(f"no `{DECODE}` signature (has {sorted(sigs)})")
        self.prefill = {
            int(n[len(PREFILL_PREFIX) :]): self.interpreter.get_signature_runner(n)
            for n in sigs
            if n.startswith(PREFILL_PREFIX)
        }
        self.decode = self.interpreter.get_signature_runner(DECODE)
        details = self.decode.get_input_details()
        self.cache_specs = {
            n: (tuple(d["shape"]), d["dtype"]) for n, d in details.items() if n.startswith("kv_cache")
        }
        self.slots = next(iter(self.cache_specs.values()))[0][2]

    def empty_cache(self) -> dict[str, np.ndarray]:
        return {n: np.zeros(shape, dtype) for n, (shape, dtype) in self.cache_specs.items()}

    def _call(self, runner, ids: list[int], start: int, length: int, cache):
        tokens = np.zeros((1, length), np.int32)
        tokens[0, : len(ids)] = ids
        pos = np.zeros((length,), np.int32)
        pos[: len(ids)] = np.arange(start, start + len(ids))
        out = runner(tokens=tokens, input_pos=pos, **cache)
        return out["logits"][0, : len(ids)], {n: out[n] for n in cache}

    def run(self, ids: list[int], cache, start: int = 0):
        """Feed `ids` from position `start` as the runtime does -> (logits [n, V], cache).
        Chunks: the longest prefill signature that fits (greedy), the tail padded; 1 = decode."""
        rows = []
        while ids:
            fits = [t for t in self.prefill if t <= len(ids)]
            if len(ids) == 1 or not self.prefill:
                length, runner = 1, self.decode
            elif fits:
                length = max(fits)
                runner = self.prefill[length]
            else:
                length = min(self.prefill)
                runner = self.prefill[length]
            take = ids[:length]
            if start + length > self.slots:
                raise ValueError(f"position {start + length} past the cache ({self.slots} slots)")
            logits, cache = self._call(runner, take, start, length, cache)
            rows.append(logits)
            ids, start = ids[len(take) :], start + len(take)
        return np.concatenate(rows), cache

    def greedy(self, prompt_ids: list[int], max_new_tokens: int, stop: tuple[int, ...] = ()):
        logits, cache = self.run(list(prompt_ids), self.empty_cache())
        out, pos = [], len(prompt_ids)
        nxt = int(np.argmax(logits[-1]))
        while len(out) < max_new_tokens:
            out.append(nxt)
            if nxt in stop:
                break
            step, cache = self.run([nxt], cache, pos)
            pos += 1
            nxt = int(np.argmax(step[-1]))
        return out


class LiteRTRunner:
    """An exported `.litertlm` run by LiteRT-LM (greedy) and ai_edge_litert (logits)."""

    name = "litert-lm"

    def __init__(self, path: str | pathlib.Path, tokenizer: TextTokenizer, threads: int = 2):
        self.path, self.tokenizer, self.threads = pathlib.Path(path), tokenizer, threads
        self._engine = None
        self._signatures = None

    @property
    def signatures(self) -> SignatureModel:
        if self._signatures is None:
            self._signatures = SignatureModel(bundle_tflite(self.path))
        return self._signatures

    @property
    def engine(self):
        if self._engine is None:
            import litert_lm

            self._engine = litert_lm.Engine(
                str(self.path), backend=litert_lm.Backend.CPU(thread_count=self.threads)
            )
        return self._engine

    def prompt_text(self, prompt_ids: list[int]) -> str:
        """The text the Engine gets for `prompt_ids`; ValueError if it would tokenize differently."""
        text = self.tokenizer.decode(prompt_ids)
        back = self.engine.tokenize(text)
        if list(back) != list(prompt_ids):
            raise ValueError(
                f"prompt ids {list(prompt_ids)[:16]}... do not survive decode/encode through the "
                f"bundled tokenizer (got {list(back)[:16]}...): the LiteRT-LM Engine takes text only"
            )
        return text

    def greedy_text(self, prompt_ids: list[int], max_new_tokens: int) -> str:
        """The Engine's greedy response text (stops at a stop token or after max_new_tokens)."""
        import litert_lm

        text = self.prompt_text(prompt_ids)
        session = self.engine.create_session(
            apply_prompt_template=False,
            sampler_config=litert_lm.SamplerConfig(top_k=1),
            max_output_tokens=max_new_tokens,
        )
        try:
            session.run_prefill([text])
            return "".join(session.run_decode().texts)
        finally:
            session.close()

    def greedy(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        return list(self.engine.tokenize(self.greedy_text(prompt_ids, max_new_tokens)))

    def logits(self, prompt_ids: list[int]) -> np.ndarray:
        """[len(prompt_ids), vocab] float32 from the signature runners."""
        return self.signatures.run(list(prompt_ids), self.signatures.empty_cache())[0]

    def signature_greedy(self, prompt_ids: list[int], max_new_tokens: int, stop=()) -> list[int]:
        return self.signatures.greedy(prompt_ids, max_new_tokens, tuple(stop))


def open_runner(path: str | pathlib.Path, checkpoint_dir: str | pathlib.Path) -> LiteRTRunner:
    """A runner for the `.litertlm` at `path`; checkpoint_dir gives the tokenizer (load_model's)."""
    from andesvl_jax.infer.load import load_model

    _, tokenizer = load_model(checkpoint_dir)
    return LiteRTRunner(path, tokenizer)
