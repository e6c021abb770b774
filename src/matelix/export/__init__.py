"""Portable exports of a finished run: a clean Hugging Face folder, the LoRA adapter alone, or GGUF (f16 or
q8_0) with an Ollama Modelfile, each verified against the lab's own model before it is offered.

    matelix export RUN --format hf|adapter|gguf [--quant f16|q8_0] [--out DIR]

`runner.export_run` writes an export to a temporary folder, checks it (`parity.py`), and renames it into
`training_outputs/<run>/exports/<name>/`; `runner.list_exports` lists them per run.
"""

FORMATS = ("hf", "adapter", "gguf")
QUANTS = ("f16", "q8_0")
