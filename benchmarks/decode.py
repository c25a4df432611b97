"""Generation speed: our jitted prefill + while-loop decode vs transformers `generate`, same weights, same run.

    python benchmarks/decode.py                              # tiny and Qwen3-0.6B, batch 1 and 8 (2 cores: 10-25 min)
    python benchmarks/decode.py --sizes tiny --repeats 5     # 1-2 min
    python benchmarks/decode.py --sizes 0.6b --against HEAD,2dc3963   # + our engine at commits

For each size a random `transformers.Qwen3ForCausalLM` (fp32) is saved to a temporary safetensors
directory and imported with `convert.loader.load_checkpoint`, so both engines hold the SAME weights.
Text-only prompts of `--prompt-len` random tokens, greedy, exactly `--new-tokens` new tokens (no stop
tokens; transformers with `min_new_tokens = max_new_tokens`, `use_cache=True`, no eos).
`--against REV[,REV...]` adds one engine per revision: ours as committed at REV (`git archive` into
a temporary directory, run in a worker process with that tree on PYTHONPATH, loading the same
checkpoint and prompts), timed inside the same repeats, so old and new code are compared under the
same load. Compare revisions with each other (`A x B`, both in workers), not with the in-process
`ours`: the process an engine runs in is itself a difference (`--against HEAD` measures it).

Timing (compile excluded by a warm-up call of every shape). Every repeat times T(1) and T(N) of every
engine at every batch size, interleaved (the engine order rotates between repeats; the load of a
shared machine drifts over a run), and every figure is computed per repeat from that repeat's own
measurements, then reported as the **median over the repeats with its min-max range and n**:
  * T(n) = wall time of one `generate` call producing n tokens per row.
  * decode step = (T(N) - T(1)) / (N - 1): both engines run N - 1 decode forwards for N tokens
    and none for 1, so the difference is N - 1 steps in both. decode tokens/s = batch / step.
  * prefill = T(1) for both; prefill tokens/s = batch * L / prefill.
  * ratios (x HF, x REV, step vs batch 1) divide two measurements of the same repeat.
The batch-1 decode rate is compared with the memory-bandwidth ceiling: read bandwidth / (all
parameters x 4 bytes): every weight, the whole tied embedding table included (it is the LM head), is
read once per decode step. Read bandwidth (`Bandwidth`): a jitted matrix-vector product over a
1 GiB float32 array repeated for a window that reads about as many bytes as the measured decode
steps, run before every repeat (`%ceil` of a repeat uses the window just before it); `1-shot` =
the median rate against the best single probe of the run, of that product, a jitted `jnp.sum` or a
numpy sum (on a loaded machine a 0.1 s probe can hit a quiet moment that seconds of decoding
cannot); the sums alone were this benchmark's first ceiling, and a decode step's matrix-vector
products beat them. The load average is recorded before every repeat. Our engine runs the model in
`infer.engine.decoding_layout`, as the `Engine` does. The `tokens` column compares our greedy
tokens with transformers' (and each REV's). Prints a table and writes benchmarks/results/decode.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

# size -> (preset, default prompt length, default new tokens)
SIZES = {"tiny": ("tiny", 64, 64), "0.6b": ("0.6b", 64, 16)}
PROTOCOL = "@@decode-worker "  # prefix of the worker's reply lines (its other output is ignored)


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


class Bandwidth:
    """Read-bandwidth probes over one `gib` GiB float32 array, every probe keeping its best.

    * jax_sum, numpy_sum: one full reduction (the probes of the first version of this benchmark);
    * jax_matvec: one [n / 1024, 1024] @ ones(1024), a pure streaming read that XLA runs faster
      than its reduction on this CPU (a decode step's matrix-vector products beat the sum probes);
    * sustained (`window`): `reads` matvecs back to back timed as one window reading about as many
      bytes as the N - 1 decode steps of a 0.6B row (~26 GB). `bench_size` runs one before every
      repeat of its timing loop, so each size's ceiling is measured under the load its decode saw;
      a 0.1 s single probe can land in a quiet moment that seconds of decoding cannot.
    """

    def __init__(self, gib: float = 1.0, reads: int = 24):
        import jax
        import jax.numpy as jnp

        self.n, self.reads = int(gib * 2**30) // 4, reads
        self.x = jnp.ones((self.n // 1024, 1024), jnp.float32)
        self.ones = jnp.ones((1024,), jnp.float32)
        self.matvec, self.total = jax.jit(jnp.matmul), jax.jit(jnp.sum)
        self.matvec(self.x, self.ones).block_until_ready(), self.total(self.x).block_until_ready()
        self.best: dict[str, float] = {}

    def _keep(self, name: str, seconds: float, reads: int = 1) -> float:
        gbs = reads * 4 * self.n / seconds / 1e9
        self.best[name] = max(self.best.get(name, 0.0), gbs)
        return gbs

    def single(self, repeats: int = 3) -> dict:
        """Best single probes of each kind (the numpy array is allocated for the call only)."""
        for _ in range(repeats):
            self._keep("jax_sum_gbs", _timed(lambda: self.total(self.x).block_until_ready())[0])
            self._keep(
                "jax_matvec_gbs",
                _timed(lambda: self.matvec(self.x, self.ones).block_until_ready())[0],
            )
        y = np.ones((self.n,), np.float32)
        y.sum()
        for _ in range(repeats):
            self._keep("numpy_sum_gbs", _timed(y.sum)[0])
        del y
        gc.collect()
        return self.summary()

    def window(self) -> float:
        """Sustained read bandwidth (GB/s) of one window of `reads` matvecs."""

        def run():
            for _ in range(self.reads):
                self.matvec(self.x, self.ones).block_until_ready()

        return self._keep("jax_matvec_sustained_gbs", _timed(run)[0], self.reads)

    def summary(self) -> dict:
        b = self.best
        sums = max(b.get("jax_sum_gbs", 0.0), b.get("numpy_sum_gbs", 0.0))
        return {
            **b,
            "sum_gbs": sums,
            "single_gbs": max(sums, b.get("jax_matvec_gbs", 0.0)),
            "read_gbs": b.get("jax_matvec_sustained_gbs", 0.0),
        }


def save_hf_model(text_cfg, max_positions: int, directory: pathlib.Path, seed: int = 0):
    """A random transformers Qwen3 shaped like `text_cfg`, saved to `directory` (safetensors)."""
    import torch
    import transformers

    from andesvl_jax.convert.torch_reference import hf_qwen3_config, randomise

    torch.manual_seed(seed)
    hf = randomise(transformers.Qwen3ForCausalLM(hf_qwen3_config(text_cfg, max_positions)), seed)
    hf.eval().save_pretrained(directory)
    return hf


def engine_model(checkpoint: pathlib.Path):
    """(our AndesVL holding the checkpoint's Qwen3 as its LLM, in the decoding layout, LLM parameter
    count). Only APIs that older commits have too: `--against` runs this in their checkout."""
    import jax
    from flax import nnx

    from andesvl_jax.config import TINY_VISION
    from andesvl_jax.convert.loader import load_checkpoint
    from andesvl_jax.infer.engine import decoding_layout
    from andesvl_jax.models.andesvl import AndesVL, run_options
    from andesvl_jax.models.projector import Projector
    from andesvl_jax.models.vit import VisionEncoder

    llm, report = load_checkpoint(checkpoint)
    # The engine takes an AndesVL; text-only prompts never touch the vision tower, so it is a tiny
    # one (built for real: its weights are jit arguments) and only the LLM is the checkpoint's.
    acfg = report.config.replace(vision=TINY_VISION)
    run = run_options(acfg)
    model = nnx.eval_shape(lambda: AndesVL(acfg, rngs=nnx.Rngs(0)))
    model.vision = VisionEncoder(acfg.vision, rngs=nnx.Rngs(1), **run)
    model.projector = Projector(
        acfg, rngs=nnx.Rngs(2), param_dtype=run["param_dtype"], dtype=run["dtype"]
    )
    model.llm = llm
    model = decoding_layout(model)  # per-layer weights, as the Engine decodes
    if not all(isinstance(x, jax.Array) for x in jax.tree.leaves(nnx.state(model))):
        raise RuntimeError("engine model still holds abstract (eval_shape) parameters")
    return model, int(sum(x.size for x in jax.tree.leaves(nnx.state(llm, nnx.Param))))


def ours_runner(model, ids: np.ndarray):
    """n -> (seconds, greedy tokens [b, n]) of our `generate` (timed until the call has finished)."""
    from andesvl_jax.infer.generate import generate
    from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams

    b, L = ids.shape
    greedy = SamplingBatch.of([SamplingParams()] * b)
    lengths = np.full((b,), L, np.int32)

    def call(n):
        return _timed(
            lambda: (
                generate(
                    model, ids, lengths, None, greedy, max_new_tokens=n, stop_tokens=(), pad_id=0
                ).tokens
            )  # np.asarray inside: the call has finished
        )

    return call


def hf_runner(hf, ids: np.ndarray):
    """n -> (seconds, greedy tokens [b, n]) of transformers `generate` (KV cache, exactly n tokens)."""
    import torch

    x = torch.from_numpy(ids.astype(np.int64))
    mask = torch.ones_like(x)

    def call(n):
        with torch.inference_mode():
            seconds, out = _timed(
                lambda: hf.generate(
                    input_ids=x,
                    attention_mask=mask,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    pad_token_id=0,
                    eos_token_id=None,
                )
            )
        return seconds, out[:, ids.shape[1] :].numpy()

    return call


class RevisionEngine:
    """Our engine as committed at `rev`, in a worker process (this file run with `--worker`, that
    revision's tree first on PYTHONPATH) that loads `checkpoint` and the prompts `ids_b{b}.npy`
    there, warms up, then times one `generate` per request; `runner(b)` is like `ours_runner`."""

    def __init__(self, rev: str, checkpoint: pathlib.Path, batches, new_tokens: int):
        repo = pathlib.Path(__file__).resolve().parent.parent
        self.rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", rev],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.tree = pathlib.Path(tempfile.mkdtemp(prefix=f"decode_rev_{self.rev}_"))
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", self.rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(self.tree)], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        args = ["--worker", str(checkpoint), "--batches", ",".join(map(str, batches))]
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *args, "--new-tokens", str(new_tokens)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        ready = self._reply()
        self.n_params, self.package = ready["params"], ready["package"]
        if not pathlib.Path(self.package).is_relative_to(self.tree):
            raise RuntimeError(f"worker imported {self.package}, not the tree of {self.rev}")

    def _reply(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL) :])
        raise RuntimeError(f"worker for {self.rev} exited with {self.proc.wait()}")

    def runner(self, b: int):
        def call(n):
            self.proc.stdin.write(json.dumps({"batch": b, "n": n}) + "\n")
            self.proc.stdin.flush()
            reply = self._reply()
            return reply["seconds"], np.asarray(reply["tokens"], np.int32)

        return call

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        shutil.rmtree(self.tree, ignore_errors=True)


def use_checkout_kernels() -> str:
    """Map the top-level kernels/ of the andesvl_jax checkout on sys.path in as andesvl_jax.kernels
    (trees before b6c2640 only had it through the editable install, which points at another
    checkout) -> the package's path."""
    import andesvl_jax

    root = pathlib.Path(andesvl_jax.__file__).resolve().parent.parent
    if (root / "kernels").is_dir() and str(root) not in andesvl_jax.__path__:
        andesvl_jax.__path__.append(str(root))
    return andesvl_jax.__file__


def worker(checkpoint: pathlib.Path, batches, new_tokens: int) -> None:
    """`--worker`: serve `RevisionEngine` requests with whichever andesvl_jax is on sys.path."""
    package = use_checkout_kernels()

    def reply(obj) -> None:
        print(PROTOCOL + json.dumps(obj), flush=True)

    model, n_params = engine_model(checkpoint)
    runs = {b: ours_runner(model, np.load(checkpoint / f"ids_b{b}.npy")) for b in batches}
    for call in runs.values():
        call(1), call(new_tokens)  # compile / warm up both shapes
    reply({"params": n_params, "package": package})
    for line in sys.stdin:
        request = json.loads(line)
        seconds, tokens = runs[request["batch"]](request["n"])
        reply({"seconds": seconds, "tokens": tokens.tolist()})


def token_check(ours: np.ndarray, theirs: np.ndarray) -> str:
    if ours.shape != theirs.shape:
        return f"shape {ours.shape} vs {theirs.shape}"
    if np.array_equal(ours, theirs):
        return "equal"
    diff = ours != theirs
    first = int(diff.any(axis=0).argmax())
    return f"differ: {int(diff.any(axis=1).sum())}/{len(ours)} rows, first at step {first}"


def spread(values) -> dict:
    """median, min, max, quartiles and n of one figure's per-repeat values (None = not defined)."""
    x = np.asarray([v for v in values if v is not None], np.float64)
    if not x.size:
        return {
            "median": None,
            "min": None,
            "max": None,
            "q1": None,
            "q3": None,
            "n": 0,
            "runs": [],
        }
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    return {
        "median": float(median),
        "min": float(x.min()),
        "max": float(x.max()),
        "q1": float(q1),
        "q3": float(q3),
        "n": int(x.size),
        "runs": [float(v) for v in x],
    }


def repeat_figures(t: dict, batch: int, prompt_len: int, new_tokens: int, engines, ceiling) -> dict:
    """The figures of one repeat at one batch size from its timings t[engine, n] (seconds).

    ceiling: the batch-1 tokens/s bound from this repeat's bandwidth window (None past batch 1)."""
    f = {}
    for e in engines:
        step = (t[e, new_tokens] - t[e, 1]) / (new_tokens - 1)
        f[f"{e}_T1_s"], f[f"{e}_TN_s"], f[f"{e}_step_s"] = t[e, 1], t[e, new_tokens], step
        f[f"{e}_decode_tok_s"] = batch / step if step > 0 else None  # tiny: noise can beat a step
        f[f"{e}_prefill_tok_s"] = batch * prompt_len / t[e, 1]
        ok = ceiling is not None and step > 0
        f[f"{e}_pct_of_ceiling"] = (batch / step) / ceiling if ok else None
    for other in (e for e in engines if e != "ours"):
        ok = f["ours_step_s"] > 0 and f[f"{other}_step_s"] > 0
        f[f"decode_speedup_vs_{other}"] = f[f"{other}_step_s"] / f["ours_step_s"] if ok else None
        f[f"prefill_speedup_vs_{other}"] = t[other, 1] / t["ours", 1]
        f[f"end_to_end_speedup_vs_{other}"] = t[other, new_tokens] / t["ours", new_tokens]
    revs = [e for e in engines if e.startswith("at_")]
    for i, a in enumerate(revs):  # worker vs worker: the same process placement on both sides
        for other in revs[i + 1 :]:
            ok = f[f"{a}_step_s"] > 0 and f[f"{other}_step_s"] > 0
            ratio = f[f"{other}_step_s"] / f[f"{a}_step_s"] if ok else None
            f[f"decode_speedup_{a}_vs_{other}"] = ratio
    return f


def bench_size(
    size: str, batches, prompt_len: int, new_tokens: int, repeats: int, bw, against: list[str]
):
    """Rows for one size: every figure's median over the repeats (row[key]) and its spread
    (row['spread'][key]); see the module docstring."""
    from andesvl_jax.config import get_preset

    text = get_preset(SIZES[size][0]).text
    rng = np.random.default_rng(1)
    prompts = {
        b: rng.integers(0, text.vocab_size, (b, prompt_len)).astype(np.int32) for b in batches
    }
    checkpoint = pathlib.Path(tempfile.mkdtemp(prefix="decode_bench_"))
    revs = []
    try:
        hf = save_hf_model(text, prompt_len + new_tokens, checkpoint)
        for b, ids in prompts.items():
            np.save(checkpoint / f"ids_b{b}.npy", ids)
        model, n_params = engine_model(checkpoint)
        hf_params = sum(p.numel() for p in hf.parameters())  # tied weights counted once
        if n_params != hf_params:
            raise RuntimeError(
                f"parameter count differs: ours {n_params}, transformers {hf_params}"
            )
        for name in against:
            revs.append(RevisionEngine(name, checkpoint, batches, new_tokens))
        gc.collect()
        runs = {}
        for b, ids in prompts.items():
            runs[b] = {"ours": ours_runner(model, ids), "hf": hf_runner(hf, ids)}
            for call in runs[b].values():
                call(1), call(new_tokens)  # compile / warm up both shapes
            for rev in revs:
                runs[b][f"at_{rev.rev}"] = rev.runner(b)
        engines = list(runs[batches[0]])
        per_repeat, tokens, windows, loads = {b: [] for b in batches}, {}, [], []
        for r in range(repeats):
            loads.append(os.getloadavg()[0])
            windows.append(bw.window())
            ceiling = windows[-1] * 1e9 / (4 * n_params)
            order = engines[r % len(engines) :] + engines[: r % len(engines)]
            for b in batches:
                t = {}
                for e in order:
                    for n in (1, new_tokens):
                        t[e, n], tokens[b, e] = runs[b][e](n)
                    gc.collect()
                per_repeat[b].append(
                    repeat_figures(
                        t, b, prompt_len, new_tokens, engines, ceiling if b == 1 else None
                    )
                )
            print(
                f"  {size} repeat {r + 1}/{repeats}: load {loads[-1]:.2f}, window {windows[-1]:.1f} GB/s"
            )
        windows.append(bw.window())
        loads.append(os.getloadavg()[0])
    finally:
        for rev in revs:
            rev.close()
        shutil.rmtree(checkpoint, ignore_errors=True)
    if 1 in per_repeat:  # the step of batch b over the batch-1 step of the same repeat
        for b in batches:
            for figs, base in zip(per_repeat[b], per_repeat[1], strict=True):
                for e in engines:
                    step, step1 = figs[f"{e}_step_s"], base[f"{e}_step_s"]
                    figs[f"{e}_step_vs_b1"] = step / step1 if step > 0 and step1 > 0 else None
    rows = []
    for b in batches:
        stats = {k: spread(f[k] for f in per_repeat[b]) for k in per_repeat[b][0]}
        rows.append(
            {
                "size": size,
                "params": n_params,
                "batch": b,
                "prompt_len": prompt_len,
                "new_tokens": new_tokens,
                "repeats": repeats,
                "against": [rev.rev for rev in revs],
                **{k: s["median"] for k, s in stats.items()},
                "spread": stats,
                "tokens": token_check(tokens[b, "ours"], tokens[b, "hf"]),
                "tokens_vs_revs": {
                    rev.rev: token_check(tokens[b, "ours"], tokens[b, f"at_{rev.rev}"])
                    for rev in revs
                },
                "size_windows_gbs": windows,
                "size_read_gbs": float(np.median(windows)),
                "load_average_per_repeat": loads,
                "peak_rss_gib": peak_rss_gib(),
            }
        )
        print(
            f"  {size} b={b}: tokens vs HF {rows[-1]['tokens']}, vs revisions "
            f"{rows[-1]['tokens_vs_revs']}"
        )
    del hf, model, runs
    gc.collect()
    return rows


def add_ceilings(rows, bw: dict) -> None:
    """Batch-1 ceiling = read bandwidth / (all parameters x 4 B): `ceiling` the median of the size's
    sustained windows (the per-repeat %ceil uses each repeat's own window), `_single` the best single
    probe of the run, `_sum` the reduction probes only (this benchmark's first ceiling)."""
    for r in rows:
        keys = (("", r["size_read_gbs"]), ("_single", bw["single_gbs"]), ("_sum", bw["sum_gbs"]))
        for key, gbs in keys:
            ceiling = gbs * 1e9 / (4 * r["params"])
            r[f"ceiling{key}_tok_s_b1"] = ceiling
            if key:
                rate = r["ours_decode_tok_s"]
                ok = r["batch"] == 1 and rate is not None
                r[f"ours_pct_of_ceiling{key}"] = rate / ceiling if ok else None


def _fmt(x, spec):
    return format(x, spec) if x is not None else format("-", ">" + spec.split(".")[0])


def _med(r, key, spec, scale=1.0) -> str:
    """'median [min-max]' of a row's figure."""
    s = r["spread"].get(key)
    if s is None or s["median"] is None:
        return "-"
    lo, mid, hi = (format(s[k] * scale, spec) for k in ("min", "median", "max"))
    return f"{mid} [{lo}-{hi}]"


def print_table(rows) -> None:
    revs = list(dict.fromkeys(rev for r in rows for rev in r["against"]))
    pairs = [(a, b) for i, a in enumerate(revs) for b in revs[i + 1 :]]
    cols = [
        ("size", lambda r: r["size"]),
        ("b", lambda r: str(r["batch"])),
        ("step ms", lambda r: _med(r, "ours_step_s", ".1f", 1e3)),
        ("decode tok/s", lambda r: _med(r, "ours_decode_tok_s", ".1f")),
        ("HF tok/s", lambda r: _med(r, "hf_decode_tok_s", ".1f")),
        ("x HF", lambda r: _med(r, "decode_speedup_vs_hf", ".2f")),
        *((f"x {v}", lambda r, v=v: _med(r, f"decode_speedup_vs_at_{v}", ".2f")) for v in revs),
        *(
            (f"{a} x {b}", lambda r, a=a, b=b: _med(r, f"decode_speedup_at_{a}_vs_at_{b}", ".2f"))
            for a, b in pairs
        ),
        ("%ceil", lambda r: _med(r, "ours_pct_of_ceiling", ".1f", 100)),
        ("1-shot", lambda r: _fmt(r["ours_pct_of_ceiling_single"], ".1%")),
        ("HF %ceil", lambda r: _med(r, "hf_pct_of_ceiling", ".1f", 100)),
        ("step/b1", lambda r: _med(r, "ours_step_vs_b1", ".2f")),
        ("HF step/b1", lambda r: _med(r, "hf_step_vs_b1", ".2f")),
        *((f"{v} step/b1", lambda r, v=v: _med(r, f"at_{v}_step_vs_b1", ".2f")) for v in revs),
        ("prefill tok/s", lambda r: _med(r, "ours_prefill_tok_s", ".0f")),
        ("HF", lambda r: _med(r, "hf_prefill_tok_s", ".0f")),
        ("e2e x HF", lambda r: _med(r, "end_to_end_speedup_vs_hf", ".2f")),
        ("tokens vs HF", lambda r: r["tokens"]),
        *((f"vs {v}", lambda r, v=v: r["tokens_vs_revs"].get(v, "-")) for v in revs),
    ]
    print("median [min-max] over the repeats:")
    print(" | ".join(name for name, _ in cols))
    for r in rows:
        print(" | ".join(fn(r) for _, fn in cols))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,0.6b")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=None, help="default: tiny 64, 0.6b 16")
    parser.add_argument("--prompt-len", type=int, default=None, help="default: 64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--against",
        default="",
        help="git revisions (comma-separated): also time our engine as committed there",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # RevisionEngine's
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "decode.json")
    )
    args = parser.parse_args()
    if args.new_tokens is not None and args.new_tokens < 2:
        parser.error("--new-tokens must be >= 2 (decode time is T(N) - T(1))")
    batches = [int(b) for b in args.batches.split(",")]
    if args.worker:
        return worker(pathlib.Path(args.worker), batches, args.new_tokens)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    import jax
    import torch

    load_before = os.getloadavg()
    bw = Bandwidth()
    bw.window()
    first = bw.single(repeats=5)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); read bandwidth at start: jax sum "
        f"{first['jax_sum_gbs']:.1f}, jax matvec {first['jax_matvec_gbs']:.1f} (sustained "
        f"{first['jax_matvec_sustained_gbs']:.1f}), numpy sum {first['numpy_sum_gbs']:.1f} GB/s; "
        f"load average {load_before[0]:.2f}"
    )
    rows = []
    for size in args.sizes.split(","):
        if size not in SIZES:
            parser.error(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
        _, default_l, default_n = SIZES[size]
        rows += bench_size(
            size,
            batches,
            args.prompt_len or default_l,
            args.new_tokens or default_n,
            args.repeats,
            bw,
            [rev for rev in args.against.split(",") if rev],
        )
    band = bw.single()
    add_ceilings(rows, band)
    load_after = os.getloadavg()
    print(
        f"best read bandwidth over the run: jax sum {band['jax_sum_gbs']:.1f}, jax matvec "
        f"{band['jax_matvec_gbs']:.1f}, numpy sum {band['numpy_sum_gbs']:.1f}, sustained jax matvec "
        f"{band['jax_matvec_sustained_gbs']:.1f} GB/s; load average {load_before[0]:.2f} -> "
        f"{load_after[0]:.2f}; peak RSS {peak_rss_gib():.2f} GiB"
    )
    for size in dict.fromkeys(r["size"] for r in rows):
        r = next(r for r in rows if r["size"] == size)
        print(
            f"  {size}: {r['params'] / 1e6:.2f} M params, {4 * r['params'] / 1e9:.3f} GB/step; "
            f"sustained read bandwidth during its runs, median {r['size_read_gbs']:.1f} GB/s "
            f"(windows {', '.join(f'{w:.1f}' for w in r['size_windows_gbs'])}; load average "
            f"{', '.join(f'{x:.2f}' for x in r['load_average_per_repeat'])}): ceiling "
            f"{r['ceiling_tok_s_b1']:.2f} tok/s (best single probe of the run: "
            f"{r['ceiling_single_tok_s_b1']:.2f}, sum probes: {r['ceiling_sum_tok_s_b1']:.2f})"
        )
    print_table(rows)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "jax": jax.__version__,
                    "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                },
                "statistic": "median over repeats; spread[key] = min, max, q1, q3, n, runs",
                "bandwidth": band,
                "peak_rss_gib": peak_rss_gib(),
                "rows": rows,
                "args": vars(args),
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
