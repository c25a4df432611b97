"""Export to on-device runtimes (docs/export.md): GGUF for llama.cpp and LiteRT-LM / LiteRT.

Lives at the top level of the repository (the user's layout) and installs as `andesvl_jax.export`
(like `kernels/`): always import it as `andesvl_jax.export`.
"""
