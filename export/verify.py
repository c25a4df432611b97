"""`andesvl-jax export verify OUT --checkpoint DIR`: run an export in its real runtime against our engine.

For every exported model file in OUT (or OUT itself when it is a file) the runtime registered for
its suffix (RUNTIMES) loads it; per prompt set it reports
  * top-1 agreement: the fraction of positions (each prompt + our greedy continuation, teacher
    forced) where the runtime's argmax equals ours;
  * greedy identical: the fraction of prompts whose greedy continuation is token-for-token ours;
  * max logit error, relative: max |runtime - ours| / max(1, max |ours|) over those positions;
  * decode tok/s of the runtime and of our engine (generated tokens / wall time of the greedy
    continuation, prompt included; ours after one warm-up), measured in this run.
The exit status is non-zero when agreement is below --min-agreement or the logit error above the
tolerance (--logit-tol, default: the runner's `logit_tolerance`, e.g. 1e-4 for an f32 GGUF; none
for quantized files).

A runtime module (RUNTIMES value) provides
    open_runner(path, checkpoint_dir) -> Runner
where a Runner has
    name: str
    greedy(prompt_ids: list[int], max_new_tokens: int) -> list[int]   # exactly max_new_tokens ids
    logits(prompt_ids: list[int]) -> np.ndarray   # [len(prompt_ids), vocab] float32
    logit_tolerance: float | None   # optional: the relative logit error this file must meet
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
import time

import numpy as np

RUNTIMES = {
    ".gguf": "andesvl_jax.export.gguf_runtime",
    ".litertlm": "andesvl_jax.export.litert_runtime",
}
# files that are not models of their own (libmtmd's vision projector goes with model.gguf)
COMPANION_FILES = {"mmproj.gguf"}
INSTALL_HINTS = {
    ".gguf": "pip install llama-cpp-python==0.3.36",
    ".litertlm": "pip install litert-lm==0.18.1",
}

DEFAULT_PROMPTS = {
    "en": [
        "Describe a sunny day at the beach.",
        "What is the capital of France? Answer briefly.",
        "Write a haiku about autumn leaves.",
    ],
    "zh": ["请用一句话介绍长城。", "今天天气怎么样？"],
    "code": ["def fibonacci(n):", "SELECT name FROM users WHERE"],
}


class VerifyError(ValueError):
    """Bad verify input (no exported files, unreadable prompts file, no runtime for a suffix)."""


def runtime_module(suffix: str):
    """The runtime module for a file suffix (RUNTIMES); a missing package is a clear error."""
    if suffix not in RUNTIMES:
        raise VerifyError(f"no runtime for {suffix!r} files (known: {sorted(RUNTIMES)})")
    try:
        return importlib.import_module(RUNTIMES[suffix])
    except ImportError as e:
        raise VerifyError(
            f"the {suffix} runtime is not installed ({e}); {INSTALL_HINTS.get(suffix, '')}"
        ) from e


def exported_files(out: pathlib.Path) -> list[pathlib.Path]:
    files = [out] if out.is_file() else sorted(
        p for p in out.iterdir() if p.suffix in RUNTIMES and p.name not in COMPANION_FILES
    )
    if not files:
        raise VerifyError(f"{out}: no exported model file ({', '.join(sorted(RUNTIMES))})")
    return files


def read_prompts(path: str | None) -> dict[str, list[str]]:
    """Prompt sets: a JSONL file of {"set": NAME, "prompt": TEXT} lines, or the built-in sets."""
    if path is None:
        return DEFAULT_PROMPTS
    sets: dict[str, list[str]] = {}
    for n, line in enumerate(pathlib.Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            sets.setdefault(str(row.get("set", "default")), []).append(str(row["prompt"]))
        except (ValueError, KeyError, AttributeError) as e:
            raise VerifyError(f'{path}:{n}: expected {{"set": ..., "prompt": ...}} ({e})') from e
    if not sets:
        raise VerifyError(f"{path}: no prompts")
    return sets


def chat_prompt(tokenizer, text: str) -> list[int]:
    """`text` as a user turn + generation prompt, in our chat format's ids."""
    return [int(i) for i in tokenizer.encode(
        f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    )]  # fmt: skip


@dataclasses.dataclass
class SetResult:
    name: str
    prompts: int
    positions: int
    top1_agreement: float
    greedy_identical: float
    max_rel_logit_error: float
    runtime_tok_s: float
    ours_tok_s: float


class OurEngine:
    """Our model's reference logits and greedy decoding for prompts of token ids."""

    def __init__(self, model):
        import jax  # noqa: PLC0415
        from andesvl_jax.export.gguf_tensors import llm_of  # noqa: PLC0415

        self.model, self.llm = model, llm_of(model)
        self._forward = jax.jit(self._logits_of)

    def _logits_of(self, ids):
        import jax.numpy as jnp  # noqa: PLC0415

        t = ids.shape[0]
        hidden, _ = self.llm(
            self.llm.embed(ids[None]), jnp.arange(t)[None], jnp.ones((1, t), jnp.int32)
        )
        return self.llm.logits(hidden)[0]

    def logits(self, ids: list[int]) -> np.ndarray:
        return np.asarray(self._forward(np.asarray(ids, np.int32)))

    def greedy(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """Our engine's greedy decoding (an AndesVL); a bare Qwen3 (HF checkpoint) by full
        forwards, one per new token."""
        from andesvl_jax.infer.generate import greedy_generate  # noqa: PLC0415

        if self.llm is self.model:
            out = []
            for _ in range(max_new_tokens):
                out.append(int(np.argmax(self.logits(ids + out)[-1])))
            return out
        out = greedy_generate(
            self.model, np.asarray([ids], np.int32), max_new_tokens=max_new_tokens
        )
        return [int(t) for t in np.asarray(out)[0]]


def same_until_stop(got: list[int], ref: list[int], stops: set[int]) -> bool:
    """The runtime's greedy tokens equal ours where both decoded: a runtime that ends at a stop
    token (LiteRT-LM drops it from its text) agrees with our uncapped continuation up to it."""
    n = len(got)
    return got == ref[:n] and (n == len(ref) or ref[n] in stops or (n > 0 and got[-1] in stops))


def compare_set(
    name, prompts, runner, ours: OurEngine, max_new_tokens: int, stops: set[int] = frozenset()
) -> SetResult:
    agree = positions = identical = 0
    err = 0.0
    t_run = t_ours = 0.0
    generated = 0
    for ids in prompts:
        ours.greedy(ids, max_new_tokens)  # warm-up: compile for this length
        t0 = time.perf_counter()
        ref = ours.greedy(ids, max_new_tokens)
        t_ours += time.perf_counter() - t0
        t0 = time.perf_counter()
        got = runner.greedy(ids, max_new_tokens)
        t_run += time.perf_counter() - t0
        generated += len(got)
        identical += same_until_stop(got[:max_new_tokens], ref, stops)
        seq = ids + ref
        want, have = ours.logits(seq), runner.logits(seq)
        agree += int(np.sum(np.argmax(want, -1) == np.argmax(have, -1)))
        positions += len(seq)
        err = max(err, float(np.max(np.abs(have - want)) / max(1.0, float(np.max(np.abs(want))))))
    return SetResult(
        name, len(prompts), positions, agree / positions, identical / len(prompts), err,
        generated / t_run, len(prompts) * max_new_tokens / t_ours,
    )  # fmt: skip


def verify(out, checkpoint, prompts_file=None, max_new_tokens=16, min_agreement=0.99,
           logit_tol=None) -> tuple[bool, list[tuple[str, list[SetResult]]]]:  # fmt: skip
    """(passed, [(runner name, per-set results)]) for every exported model file in `out`."""
    from andesvl_jax.infer.load import load_model  # noqa: PLC0415

    out = pathlib.Path(out)
    files = exported_files(out)
    model, tokenizer = load_model(checkpoint)
    ours = OurEngine(model)
    stops = {tokenizer.token_id(t) for t in ("<|im_end|>", "<|endoftext|>")} - {None}
    sets = {
        k: [chat_prompt(tokenizer, p) for p in v] for k, v in read_prompts(prompts_file).items()
    }
    passed, report = True, []
    for f in files:
        runner = runtime_module(f.suffix).open_runner(f, checkpoint)
        tol = logit_tol if logit_tol is not None else getattr(runner, "logit_tolerance", None)
        results = [compare_set(k, v, runner, ours, max_new_tokens, stops) for k, v in sets.items()]
        for r in results:
            passed &= r.top1_agreement >= min_agreement
            passed &= tol is None or r.max_rel_logit_error <= tol
        report.append((f"{runner.name} [logit tol {tol}]", results))
    return passed, report


def format_report(report) -> str:
    lines = []
    for name, results in report:
        lines.append(f"== {name}")
        lines.append(
            "| set | prompts | positions | top-1 agreement | greedy identical | max rel logit err "
            "| runtime tok/s | ours tok/s |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in results:
            lines.append(
                f"| {r.name} | {r.prompts} | {r.positions} | {r.top1_agreement:.4f} | "
                f"{r.greedy_identical:.2f} | {r.max_rel_logit_error:.2e} | {r.runtime_tok_s:.1f} | "
                f"{r.ours_tok_s:.1f} |"
            )
    return "\n".join(lines)


def run(args) -> int:
    tol = None if args.logit_tol in (None, "auto") else float(args.logit_tol)
    passed, report = verify(
        args.out, args.checkpoint, args.prompts, args.max_new_tokens, args.min_agreement, tol
    )
    print(format_report(report))
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify", help="run an export in its runtime against our engine (agreement, error, tok/s)"
    )
    p.add_argument("out", help="an export directory (or one exported file)")
    p.add_argument("--checkpoint", required=True, help="the checkpoint the export was made from")
    p.add_argument("--prompts", help='JSONL of {"set": NAME, "prompt": TEXT} (default: built-in)')
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--min-agreement", type=float, default=0.99, help="top-1 agreement needed")
    p.add_argument("--logit-tol", default="auto", help="relative logit tolerance, or 'auto'")
    p.set_defaults(func=run)
