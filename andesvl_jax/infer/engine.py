"""Chat-level generation: samples or messages in, completions out.

`Engine` encodes prompts with the AndesVL chat template (images preprocessed exactly as in training,
thinking or no-thinking per request), batches them, runs `generate.generate` (one compiled prefill +
decode loop), and splits each completion into reasoning and answer. With a mesh, parameters are
placed by the training sharding rules and activations follow the same logical constraints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.compress.lora import LLM_ALL
from andesvl_jax.data.answers import strip_thinking
from andesvl_jax.data.chat import THINK_OPEN
from andesvl_jax.data.encode import EncodeSpec, Example, SampleEncoder
from andesvl_jax.data.patches import pack_images
from andesvl_jax.data.preprocess import ImageSpec
from andesvl_jax.data.sample import IMAGE_TAG, Message, Sample
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.adapters import AdapterError, AdapterTable
from andesvl_jax.infer.chunks import bucket
from andesvl_jax.infer.generate import generate
from andesvl_jax.infer.kv import Budget, get_policy
from andesvl_jax.infer.sampling import MODE_DEFAULTS, SamplingBatch, SamplingParams
from andesvl_jax.infer.speculative.decode import decoding_head, speculative_generate
from andesvl_jax.infer.speculative.params import TreeParams
from andesvl_jax.models.layers import rows_layout
from andesvl_jax.models.stack import unstacked
from andesvl_jax.sharding import DEFAULT_RULES, state_shardings, use_mesh_rules


@dataclasses.dataclass
class Completion:
    """text: the response as decoded (a thinking response starts with `<think>`, as the model
    sees it); reasoning / answer: text split at `</think>`; finish_reason: 'stop' or 'length'."""

    text: str
    answer: str
    reasoning: str | None
    token_ids: list[int]
    finish_reason: str


def decoding_layout(model):
    """A copy of `model` laid out for decoding (the original is left as it is):

    * layers as separate modules (`models.stack.unstacked`): a `lax.scan` over stacked weights
      slices (copies) every layer's weights on each CPU step, and separate layers also give the
      KV cache one in-place buffer per layer (`models/kv_cache.py`);
    * the LLM's matmul kernels stored [out, in] (`Linear.out_in`, `layers.rows_matmul`), which CPU
      products of a few rows read ~1.3x (1 row) to ~2.5-3x (8 rows) faster than [in, out]
      (docs/benchmarks.md, Decode).
    """
    if model.cfg.scan_layers:
        cfg = model.cfg.replace(scan_layers=False)
        model = unstacked(lambda: type(model)(cfg, rngs=nnx.Rngs(0)), model)
    else:
        model = nnx.clone(model)  # new modules, same arrays: the kernels are replaced below
    rows_layout(model.llm)
    return model


def placed(model, mesh: jax.sharding.Mesh, rules=DEFAULT_RULES):
    """`model` with every parameter placed on `mesh` by the logical-axis `rules` (host arrays or
    arrays on other devices are copied shard by shard)."""
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, jax.device_put(state, state_shardings(state, mesh, rules)))


def with_weights_dtype(model, dtype: str):
    """A copy of `model` whose floating parameters are stored as `dtype`."""
    graphdef, state = nnx.split(model)
    target = jnp.dtype(dtype)
    cast = lambda a: a.astype(target) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
    return nnx.merge(graphdef, jax.tree.map(cast, state))


def check_kv_request(policy, budget) -> None:
    """Fail early (before encoding or compiling) on an unknown policy or a malformed budget."""
    if policy is None or budget is None:
        raise ValueError("kv_policy and kv_budget go together: give both or neither")
    get_policy(policy)
    Budget.parse(budget)


def check_speculative(cfg, draft, tree, kv_policy) -> None:
    """Fail early (before encoding or compiling) on a draft head that does not fit the model,
    tree parameters out of range, or a combination the speculative path does not run."""
    draft.check_target(cfg.text)
    (tree or TreeParams()).validate()
    if kv_policy is not None:
        raise ValueError("speculative decoding does not combine with KV eviction (kv_policy)")


def mode_sampling(thinking: bool | None) -> SamplingParams:
    """AndesVL's default sampling for a request's mode (DESIGN.md §5)."""
    return MODE_DEFAULTS["thinking" if thinking else "instruct"]


def _per_request(value, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: {len(value)} values for {n} requests")
        return list(value)
    return [value] * n


class Engine:
    def __init__(
        self,
        model,
        tokenizer: TextTokenizer,
        *,
        image_max_size: int = 733,
        max_prompt_tokens: int = 8192,
        max_patches: int = 16384,
        prefill_chunk: int = 256,
        batch_size: int = 8,
        mesh: jax.sharding.Mesh | None = None,
        rules=DEFAULT_RULES,
        weights_dtype: str | None = None,
        adapter_slots: int = 0,
        adapter_max_rank: int = 16,
        adapter_targets: str | None = None,
    ):
        """mesh: where generation runs (tensor/data parallel by `rules`); the weights are placed
        there before they are re-laid out for decoding, so no device ever holds a whole replica.
        weights_dtype: store the floating weights in this dtype for generation (e.g. "bfloat16":
        half the memory and weight traffic; compute stays in the model's dtype).
        adapter_slots / adapter_max_rank / adapter_targets: 1+N LoRA serving (infer/adapters.py):
        that many adapters of rank <= max rank on the LLM linears matching `adapter_targets`
        (default: every attention and MLP linear), loaded with `load_adapter` and chosen per
        request (`generate(adapter=...)`)."""
        cfg = model.cfg
        if mesh is not None:
            model = placed(model, mesh, rules)
        model = decoding_layout(model)
        if weights_dtype is not None:
            model = with_weights_dtype(model, weights_dtype)
        if mesh is not None:
            model = placed(model, mesh, rules)
        self.adapters = None
        if adapter_slots:
            targets = adapter_targets or LLM_ALL
            self.adapters = AdapterTable(model, adapter_slots, adapter_max_rank, targets)
        self.model, self.tok, self.cfg = model, tokenizer, cfg
        self.prefill_chunk, self.batch_size, self.mesh, self.rules = (
            prefill_chunk,
            batch_size,
            mesh,
            rules,
        )
        self.spec = EncodeSpec(
            image=ImageSpec(
                flavour=cfg.vision.flavour,
                patch_size=cfg.vision.patch_size,
                max_size=image_max_size,
            ),
            max_tokens=max_prompt_tokens,
            max_patches=max_patches,
            loss_mask="none",
            pixel_shuffle=cfg.pixel_shuffle,
            add_generation_prompt=True,
        )
        st = tokenizer.special_tokens
        self.stop_tokens, self.pad_id = (st.im_end, st.pad), st.pad
        self._encoders: dict[bool | None, SampleEncoder] = {}
        self.kv_reports: list = []

    def load_adapter(self, name: str, source) -> int:
        """Load or replace adapter `name` (a PEFT directory or a `compress.lora_files.Adapter`)
        into a slot, without recompiling; -> its slot."""
        return self._table(name).load(name, source)

    def unload_adapter(self, name: str) -> None:
        self._table(name).unload(name)

    def _table(self, name) -> AdapterTable:
        if self.adapters is None:
            raise AdapterError(
                f"adapter {name!r}: this engine has no adapter slots (Engine(adapter_slots=N))"
            )
        return self.adapters

    def encoder(self, thinking: bool | None) -> SampleEncoder:
        if thinking not in self._encoders:
            self._encoders[thinking] = SampleEncoder(
                self.tok, dataclasses.replace(self.spec, thinking=thinking)
            )
        return self._encoders[thinking]

    def encode(self, sample: Sample, thinking: bool | None) -> Example:
        """The prompt of `sample` (everything before its final answer) + the generation prompt."""
        return self.encoder(thinking)(dataclasses.replace(sample, messages=sample.prompt))

    def generate(
        self,
        samples: Sequence[Sample],
        *,
        thinking: bool | None | Sequence[bool | None] = None,
        sampling: SamplingParams | Sequence[SamplingParams] | None = None,
        max_new_tokens: int = 256,
        stream: Callable | None = None,
        kv_policy=None,
        kv_budget=None,
        adapter: str | None | Sequence[str | None] = None,
        speculative=None,
        tree=None,
        constraint=None,
    ) -> list[Completion]:
        """Completions for samples, in order, `batch_size` prompts per compiled call.

        constraint: a `TokenAutomaton` (infer/constraints.py) every request's tokens must follow
        (constrained decoding, e.g. agent/grammar.py's function-call grammar).

        adapter: the LoRA adapter of every request or one per request (None: the base alone);
        a name that is not loaded is an AdapterError before anything runs.
        thinking / sampling: one value for all or one per sample; sampling None = the mode default.
        stream: called with (step, tokens [b], done [b]) after every decode step of each batch.
        kv_policy / kv_budget: evict the KV cache (`infer.kv`: a policy name such as "snapkv" or a
        `KVPolicy`; budget a fraction kept in (0, 1] or a token count); checked before compiling.
        `self.kv_reports` then holds each batch's `KVReport` (kept / removed, cache bytes).
        speculative: an EAGLE `DraftHead` (`models.eagle`): EAGLE-2 tree speculative decoding
        (`infer.speculative`; tree: its `TreeParams`, default 10 / 7 / 60), lossless: the same
        tokens as plain decoding when greedy, the same distribution when sampling.
        `self.spec_stats` then holds each batch's `SpecStats` (tau, steps).
        """
        if kv_policy is not None or kv_budget is not None:
            check_kv_request(kv_policy, kv_budget)
        if speculative is not None:
            if constraint is not None:
                raise ValueError("speculative decoding does not combine with a constraint")
            check_speculative(self.cfg, speculative, tree, kv_policy)
            speculative = decoding_head(speculative)
        self.kv_reports, self.spec_stats = [], []
        n = len(samples)
        names = _per_request(adapter, n, "adapter")
        if speculative is not None and any(a is not None for a in names):
            raise ValueError("speculative decoding does not combine with LoRA adapters (adapter=)")
        if any(a is not None for a in names):
            self._table(next(a for a in names if a is not None)).slot_ids(names)
        modes = _per_request(thinking, n, "thinking")
        params = [
            p if p is not None else mode_sampling(m)
            for p, m in zip(_per_request(sampling, n, "sampling"), modes, strict=True)
        ]
        out: list[Completion] = []
        for start in range(0, n, self.batch_size):
            rows = slice(start, start + self.batch_size)
            examples = [self.encode(s, m) for s, m in zip(samples[rows], modes[rows], strict=True)]
            if self.adapters is not None:
                self.adapters.select(names[rows])
            out += self._run(
                examples,
                modes[rows],
                params[rows],
                max_new_tokens,
                stream,
                kv_policy,
                kv_budget,
                (speculative, tree),
                constraint,
            )
        return out

    def _run(
        self,
        examples,
        modes,
        params,
        max_new_tokens,
        stream,
        kv_policy=None,
        kv_budget=None,
        speculative=(None, None),
        constraint=None,
    ) -> list[Completion]:
        lengths = np.array([e.num_tokens for e in examples], np.int32)
        ids = np.full((len(examples), int(lengths.max())), self.pad_id, np.int32)
        for row, e in enumerate(examples):
            ids[row, : e.num_tokens] = e.ids
        most = max(e.num_patches for e in examples)
        images = None
        if most:
            images = pack_images(
                [[im.pixel_values for im in e.images] for e in examples],
                self.cfg.vision.patch_size,
                max_patches=bucket(most, 64),
            )
        kw = dict(
            max_new_tokens=max_new_tokens,
            stop_tokens=self.stop_tokens,
            pad_id=self.pad_id,
            prefill_chunk=self.prefill_chunk,
            stream=stream,
        )
        draft, tree = speculative
        if draft is not None:
            args = (self.model, draft, ids, lengths, images, SamplingBatch.of(params))
            result, stats = self._in_mesh(lambda: speculative_generate(*args, params=tree, **kw))
            self.spec_stats.append(stats)
            return [
                self._completion(
                    result.tokens[r, : result.num_tokens[r]], bool(result.stopped[r]), m
                )
                for r, m in enumerate(modes)
            ]
        call = lambda: generate(  # noqa: E731
            self.model,
            ids,
            lengths,
            images,
            SamplingBatch.of(params),
            max_new_tokens=max_new_tokens,
            stop_tokens=self.stop_tokens,
            pad_id=self.pad_id,
            prefill_chunk=self.prefill_chunk,
            stream=stream,
            kv_policy=kv_policy,
            kv_budget=kv_budget,
            constraint=constraint,
        )
        result = self._in_mesh(call)
        if result.kv is not None:
            self.kv_reports.append(result.kv)
        return [
            self._completion(result.tokens[r, : result.num_tokens[r]], bool(result.stopped[r]), m)
            for r, m in enumerate(modes)
        ]

    def _in_mesh(self, call):
        if self.mesh is None:
            return call()
        with use_mesh_rules(self.mesh, self.rules):
            return call()

    def _completion(self, ids: np.ndarray, stopped: bool, thinking: bool | None) -> Completion:
        ids = ids.tolist()
        body = ids[:-1] if stopped else ids  # the stop token ends the turn; it is not text
        text = self.tok.decode(body, skip_special_tokens=False)
        if thinking:  # the prompt opened the think block; the response continues inside it
            text = THINK_OPEN + text
        reasoning, answer = strip_thinking(text)
        return Completion(text, answer, reasoning, ids, "stop" if stopped else "length")

    def chat(
        self,
        messages: Sequence[Message] | str,
        images: Sequence = (),
        *,
        thinking: bool | None = None,
        sampling: SamplingParams | None = None,
        max_new_tokens: int = 512,
        on_text: Callable[[str], None] | None = None,
        kv_policy=None,
        kv_budget=None,
        adapter: str | None = None,
        speculative=None,
        tree=None,
    ) -> Completion:
        """One conversation (or one question) with its images -> the assistant's completion.

        A plain question gets one `<image>` tag per image in front of it. on_text receives the
        decoded text of each new token as it is generated.
        """
        if isinstance(messages, str):
            tags = "" if IMAGE_TAG in messages else f"{IMAGE_TAG}\n" * len(images)
            messages = [Message("user", tags + messages)]
        sample = Sample(list(messages), list(images), origin="chat")
        stream = None
        if on_text is not None:

            def stream(step, tokens, done):
                if not done[0] and int(tokens[0]) not in self.stop_tokens:
                    on_text(self.tok.decode([int(tokens[0])]))

        return self.generate(
            [sample],
            thinking=thinking,
            sampling=sampling,
            max_new_tokens=max_new_tokens,
            stream=stream,
            kv_policy=kv_policy,
            kv_budget=kv_budget,
            adapter=adapter,
            speculative=speculative,
            tree=tree,
        )[0]
