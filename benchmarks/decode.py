"""Generation speed: our jitted prefill + while-loop decode vs transformers `generate`, same weights, same run.

    python benchmarks/decode.py                              # tiny and Qwen3-0.6B, batch 1 and 8 (2 cores: 10-25 min)
    python benchmarks/decode.py --sizes tiny --repeats 5     # 1-2 min

For each size a random `transformers.Qwen3ForCausalLM` (fp32) is saved to a temporary safetensors
directory and imported with `convert.loader.load_checkpoint`, so both engines hold the SAME weights.
Text-only prompts of `--prompt-len` random tokens, greedy, exactly `--new-tokens` new tokens (no stop
tokens; transformers with `min_new_tokens = max_new_tokens`, `use_cache=True`, no eos).

Timing (compile excluded by a warm-up call of every shape; best of `--repeats`, since on a shared
machine other load only ever adds time):
  * T(n) = wall time of one `generate` call producing n tokens per row.
  * decode step = (T(N) - T(1)) / (N - 1): both engines run N - 1 decode forwards for N tokens
    and none for 1, so the difference is N - 1 steps in both. decode tokens/s = batch / step.
  * prefill = T(1) for both; prefill tokens/s = batch * L / prefill.
The batch-1 decode rate is compared with the memory-bandwidth ceiling: read bandwidth / (all
parameters x 4 bytes): every weight, the whole tied embedding table included (it is the LM head), is
read once per decode step. Read bandwidth (`Bandwidth`): a jitted matrix-vector product over a
1 GiB float32 array repeated for a window that reads about as many bytes as the measured decode
steps, run before every repeat of a size's timing loop (best kept; `%ceil`); `1-shot` = the best
single probe of the run, of that product, a jitted `jnp.sum` or a numpy sum (on a loaded machine a
0.1 s probe can hit a quiet moment that seconds of decoding cannot); the sums alone were this
benchmark's first ceiling, and a decode step's matrix-vector products beat them. Every repeat
times both engines at every batch size (interleaved: the load of a shared machine drifts over a
run). Batch-8 cost is reported as step time (b=8) / step time (b=1). Our engine runs the model in
`infer.engine.decoding_layout`, as the `Engine` does. The `tokens` column compares our greedy
tokens with transformers'. Prints a table and writes benchmarks/results/decode.json.
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
import tempfile
import time

import numpy as np

from andesvl_jax.convert.torch_reference import hf_qwen3_config, randomise

# size -> (preset, default prompt length, default new tokens)
SIZES = {"tiny": ("tiny", 64, 64), "0.6b": ("0.6b", 64, 16)}


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


def build_pair(text_cfg, max_positions: int, seed: int = 0):
    """(transformers model, our AndesVL holding the same Qwen3 weights, parameter count of the LLM)."""
    import jax
    import torch
    import transformers
    from flax import nnx

    from andesvl_jax.config import TINY_VISION
    from andesvl_jax.convert.loader import load_checkpoint
    from andesvl_jax.infer.engine import decoding_layout
    from andesvl_jax.models.andesvl import AndesVL, run_options
    from andesvl_jax.models.projector import Projector
    from andesvl_jax.models.vit import VisionEncoder

    cfg = hf_qwen3_config(text_cfg, max_positions)
    torch.manual_seed(seed)
    hf = randomise(transformers.Qwen3ForCausalLM(cfg), seed).eval()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="decode_bench_"))
    try:
        hf.save_pretrained(tmp)
        llm, report = load_checkpoint(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    gc.collect()
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
    leaves = jax.tree.leaves(nnx.state(model))
    if not all(isinstance(x, jax.Array) for x in leaves):
        raise RuntimeError("engine model still holds abstract (eval_shape) parameters")
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(llm, nnx.Param)))
    hf_params = sum(p.numel() for p in hf.parameters())  # tied weights counted once
    if n_params != hf_params:
        raise RuntimeError(f"parameter count differs: ours {n_params}, transformers {hf_params}")
    return hf, model, int(n_params)


def ours_runner(model, ids: np.ndarray):
    """n -> greedy tokens [b, n] of our `generate` (returns when the call has finished)."""
    from andesvl_jax.infer.generate import generate
    from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams

    b, L = ids.shape
    greedy = SamplingBatch.of([SamplingParams()] * b)
    lengths = np.full((b,), L, np.int32)

    def call(n):
        return generate(
            model, ids, lengths, None, greedy, max_new_tokens=n, stop_tokens=(), pad_id=0
        ).tokens  # np.asarray inside: the call has finished

    return call


def hf_runner(hf, ids: np.ndarray):
    """n -> greedy tokens [b, n] of transformers `generate` (KV cache, exactly n tokens)."""
    import torch

    x = torch.from_numpy(ids.astype(np.int64))
    mask = torch.ones_like(x)

    def call(n):
        with torch.inference_mode():
            out = hf.generate(
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
        return out[:, ids.shape[1] :].numpy()

    return call


def token_check(ours: np.ndarray, theirs: np.ndarray) -> str:
    if ours.shape != theirs.shape:
        return f"shape {ours.shape} vs {theirs.shape}"
    if np.array_equal(ours, theirs):
        return "equal"
    diff = ours != theirs
    first = int(diff.any(axis=0).argmax())
    return f"differ: {int(diff.any(axis=1).sum())}/{len(ours)} rows, first at step {first}"


def bench_size(size: str, batches, prompt_len: int, new_tokens: int, repeats: int, bw: Bandwidth):
    """Rows for one size. Every repeat times T(1) and T(N) of both engines at every batch size, after
    a sustained bandwidth window, so all the ratios compare measurements taken minutes apart at
    most (the load on a shared machine drifts over a run); each T is the best over the repeats."""
    from andesvl_jax.config import get_preset

    text = get_preset(SIZES[size][0]).text
    hf, model, n_params = build_pair(text, prompt_len + new_tokens)
    rng = np.random.default_rng(1)
    runs = {}
    for b in batches:
        ids = rng.integers(0, text.vocab_size, (b, prompt_len)).astype(np.int32)
        runs[b] = {"ours": ours_runner(model, ids), "hf": hf_runner(hf, ids)}
        for call in runs[b].values():
            call(1), call(new_tokens)  # compile / warm up both shapes
    times = {(b, who, n): [] for b in batches for who in ("ours", "hf") for n in (1, new_tokens)}
    tokens, windows = {}, []
    for _ in range(repeats):
        windows.append(bw.window())
        for b in batches:
            for who, call in runs[b].items():
                for n in (1, new_tokens):
                    dt, out = _timed(lambda call=call, n=n: call(n))
                    times[b, who, n].append(dt)
                    tokens[b, who] = out
                gc.collect()
    windows.append(bw.window())
    rows = []
    for b in batches:
        o1, on = min(times[b, "ours", 1]), min(times[b, "ours", new_tokens])
        h1, hn = min(times[b, "hf", 1]), min(times[b, "hf", new_tokens])
        o_step, h_step = (on - o1) / (new_tokens - 1), (hn - h1) / (new_tokens - 1)
        rows.append(
            {
                "size": size,
                "params": n_params,
                "batch": b,
                "prompt_len": prompt_len,
                "new_tokens": new_tokens,
                "ours_T1_s": o1,
                "ours_TN_s": on,
                "hf_T1_s": h1,
                "hf_TN_s": hn,
                "ours_step_s": o_step,
                "hf_step_s": h_step,
                "ours_decode_tok_s": b / o_step,
                "hf_decode_tok_s": b / h_step,
                "decode_speedup_vs_hf": h_step / o_step,
                "ours_prefill_s": o1,
                "hf_prefill_s": h1,
                "ours_prefill_tok_s": b * prompt_len / o1,
                "hf_prefill_tok_s": b * prompt_len / h1,
                "prefill_speedup_vs_hf": h1 / o1,
                "end_to_end_speedup_vs_hf": hn / on,
                "tokens": token_check(tokens[b, "ours"], tokens[b, "hf"]),
                "size_windows_gbs": windows,
                "size_read_gbs": max(windows),
                "peak_rss_gib": peak_rss_gib(),
            }
        )
        print(f"  {size} b={b}: {rows[-1]['tokens']}, peak RSS {peak_rss_gib():.2f} GiB")
    by_batch = {r["batch"]: r for r in rows}
    if 1 in by_batch:
        for r in rows:
            r["ours_step_vs_b1"] = r["ours_step_s"] / by_batch[1]["ours_step_s"]
            r["hf_step_vs_b1"] = r["hf_step_s"] / by_batch[1]["hf_step_s"]
    del hf, model, runs
    gc.collect()
    return rows


def add_ceilings(rows, bw: dict) -> None:
    """Batch-1 ceiling = read bandwidth / (all parameters x 4 B). Plain: the best sustained window
    of the row's own size (measured between its repeats); `_single`: the best single probe of the
    run; `_sum`: the reduction probes only (this benchmark's first ceiling)."""
    for r in rows:
        keys = (("", r["size_read_gbs"]), ("_single", bw["single_gbs"]), ("_sum", bw["sum_gbs"]))
        for key, gbs in keys:
            ceiling = gbs * 1e9 / (4 * r["params"])
            r[f"ceiling{key}_tok_s_b1"] = ceiling
            for who in ("ours", "hf"):
                rate = r[f"{who}_decode_tok_s"]
                r[f"{who}_pct_of_ceiling{key}"] = rate / ceiling if r["batch"] == 1 else None


def _fmt(x, spec):
    return format(x, spec) if x is not None else format("-", ">" + spec.split(".")[0])


def print_table(rows) -> None:
    head = (
        f"{'size':5s} {'b':>2s} {'L':>4s} {'N':>4s} | {'decode tok/s':>12s} {'HF':>8s} {'x HF':>5s} "
        f"{'%ceil':>6s} {'1-shot':>6s} {'HF %ceil':>8s} {'step/b1':>7s} {'HF':>5s} | {'prefill tok/s':>13s} "
        f"{'HF':>8s} {'x HF':>5s} | {'e2e x HF':>8s} | tokens"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['size']:5s} {r['batch']:2d} {r['prompt_len']:4d} {r['new_tokens']:4d} | "
            f"{r['ours_decode_tok_s']:12.1f} {r['hf_decode_tok_s']:8.1f} {r['decode_speedup_vs_hf']:5.2f} "
            f"{_fmt(r['ours_pct_of_ceiling'], '6.1%')} {_fmt(r['ours_pct_of_ceiling_single'], '6.1%')} "
            f"{_fmt(r['hf_pct_of_ceiling'], '8.1%')} "
            f"{_fmt(r.get('ours_step_vs_b1'), '7.2f')} {_fmt(r.get('hf_step_vs_b1'), '5.2f')} | "
            f"{r['ours_prefill_tok_s']:13.0f} {r['hf_prefill_tok_s']:8.0f} {r['prefill_speedup_vs_hf']:5.2f} | "
            f"{r['end_to_end_speedup_vs_hf']:8.2f} | {r['tokens']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,0.6b")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=None, help="default: tiny 64, 0.6b 16")
    parser.add_argument("--prompt-len", type=int, default=None, help="default: 64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "decode.json")
    )
    args = parser.parse_args()
    if args.new_tokens is not None and args.new_tokens < 2:
        parser.error("--new-tokens must be >= 2 (decode time is T(N) - T(1))")

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
    batches = [int(b) for b in args.batches.split(",")]
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
            f"sustained read bandwidth during its runs {r['size_read_gbs']:.1f} GB/s "
            f"(windows {', '.join(f'{w:.1f}' for w in r['size_windows_gbs'])}): ceiling "
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
