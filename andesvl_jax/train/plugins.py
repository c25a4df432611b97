"""Training plugins: packages above train/ that add stages, objectives, synthetic tasks or rewards.

train/ may not import the packages that build on it (agent/ is rank 9), yet a run must be able to
train their stages. A run config names them (`config.plugins = "andesvl_jax.agent"`); `load_plugins`
imports each before the config is validated, so the import registers into STAGES, OBJECTIVES, the
synthetic TASKS and REWARDS, and then calls the module's `configure(config)` if it has one (e.g. to
read its own config section). The import is by name at run time, so no static dependency points up.
"""

from __future__ import annotations

import importlib


class PluginError(ImportError):
    """A plugin named by the config that cannot be imported."""


def plugin_names(config) -> list[str]:
    raw = config.get("plugins") or ""
    return [name.strip() for name in raw.split(",") if name.strip()]


def load_plugins(config) -> list[str]:
    """Import (and configure) the config's plugins; -> their names."""
    names = plugin_names(config)
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise PluginError(f"config.plugins: cannot import {name!r}: {e}") from e
        configure = getattr(module, "configure", None)
        if configure is not None:
            configure(config)
    return names
