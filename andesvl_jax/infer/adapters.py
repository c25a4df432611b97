"""1+N LoRA serving: one base model and a fixed table of adapter slots, chosen per request.

`AdapterTable` wraps the decoding model's LLM linears in `compress.lora.SlotLoraLinear`s (slot
tables [slots, in, R] / [slots, R, out], zero-padded to the max rank R, each adapter's scale folded
into B) and keeps the name -> slot map on the host. Loading, replacing and unloading an adapter
write rows of those tables: the shapes never change and the names live outside the model graph, so
the compiled generation function is reused (tests/infer/test_lora_serving.py counts compilations).
Each request's slot id (-1: the base alone) rides in one shared `AdapterIds` variable, so a batch
mixes adapters through the BGMV term (`kernels.lora_delta`, impl "auto").
"""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np

from andesvl_jax.compress.lora import LLM_ALL, add_slots, in_out
from andesvl_jax.compress.lora_files import Adapter, load_adapter


class AdapterError(ValueError):
    """An adapter cannot be loaded or a request names one that is not loaded; names it."""


class AdapterTable:
    """name -> slot of the adapters loaded into `model` (a decoding-layout model, changed in place)."""

    def __init__(self, model, slots: int, max_rank: int, targets: str = LLM_ALL, impl="auto"):
        self.ids, self.linears = add_slots(model, slots, max_rank, targets, impl)
        self.slots, self.max_rank, self.targets = slots, max_rank, targets
        self.loaded: dict[str, int] = {}
        self.info: dict[str, dict] = {}

    def _check(self, name: str, adapter: Adapter) -> None:
        if adapter.max_rank > self.max_rank:
            raise AdapterError(
                f"adapter {name!r}: rank {adapter.max_rank} exceeds the engine's max rank "
                f"{self.max_rank} (Engine(adapter_max_rank=...))"
            )
        for module, (a, b, _) in sorted(adapter.factors.items()):
            if module not in self.linears:
                raise AdapterError(
                    f"adapter {name!r}: targets {module}, which has no adapter slot (slots are "
                    f"on the linears matching {self.targets!r}; Engine(adapter_targets=...))"
                )
            width = in_out(self.linears[module].base)
            if (a.shape[0], b.shape[1]) != width:
                raise AdapterError(
                    f"adapter {name!r}: {module} maps {a.shape[0]} -> {b.shape[1]} features, "
                    f"the base linear maps {width[0]} -> {width[1]} (another base model?)"
                )

    def load(self, name: str, source: Adapter | str | pathlib.Path) -> int:
        """Load (or replace, if `name` is loaded) an adapter from a PEFT directory or an Adapter;
        -> its slot. Everything is checked before any table is written."""
        adapter = source if isinstance(source, Adapter) else load_adapter(source)
        self._check(name, adapter)
        if name in self.loaded:
            slot = self.loaded[name]
        else:
            free = sorted(set(range(self.slots)) - set(self.loaded.values()))
            if not free:
                raise AdapterError(
                    f"cannot load adapter {name!r}: all {self.slots} adapter slots are in use "
                    f"({', '.join(sorted(self.loaded))}); unload one first"
                )
            slot = free[0]
        for module, lin in self.linears.items():
            a_row = np.zeros(lin.a.shape[1:], np.float32)
            b_row = np.zeros(lin.b.shape[1:], np.float32)
            if module in adapter.factors:
                a, b, scale = adapter.factors[module]
                a_row[:, : a.shape[1]] = a
                b_row[: b.shape[0]] = b * scale
            lin.a.set_value(lin.a[...].at[slot].set(jnp.asarray(a_row, lin.a.dtype)))
            lin.b.set_value(lin.b[...].at[slot].set(jnp.asarray(b_row, lin.b.dtype)))
        self.loaded[name] = slot
        self.info[name] = {"rank": adapter.max_rank, "bytes_fp16": adapter.nbytes()}
        return slot

    def unload(self, name: str) -> None:
        if name not in self.loaded:
            raise AdapterError(f"adapter {name!r} is not loaded (loaded: {sorted(self.loaded)})")
        slot = self.loaded.pop(name)
        self.info.pop(name)
        for lin in self.linears.values():
            lin.a.set_value(lin.a[...].at[slot].set(0))
            lin.b.set_value(lin.b[...].at[slot].set(0))

    def slot_ids(self, names) -> np.ndarray:
        """Per-request adapter names (None: the base) -> slot ids; an unloaded name is an error."""
        missing = sorted({n for n in names if n is not None and n not in self.loaded})
        if missing:
            raise AdapterError(
                f"adapter(s) {missing} not loaded (loaded: {sorted(self.loaded)}); "
                "Engine.load_adapter first"
            )
        return np.array([-1 if n is None else self.loaded[n] for n in names], np.int32)

    def select(self, names) -> None:
        """Route the next batch's rows to the adapters `names` (one per row)."""
        self.ids.set_value(jnp.asarray(self.slot_ids(names)))

    def nbytes(self) -> int:
        """Bytes of the slot tables (what 1+N serving adds to the base)."""
        return sum(lin.a[...].nbytes + lin.b[...].nbytes for lin in self.linears.values())
