"""The GGUF file basics shared by the model and adapter writers: the llama.cpp architecture name and
writing a filled `gguf.GGUFWriter` out (header, metadata, tensors, close)."""

from __future__ import annotations

import gguf

ARCH = "qwen3"


def finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
