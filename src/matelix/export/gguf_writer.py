"""A Llama-family model folder (Hugging Face format) → one GGUF file, written with the `gguf` package's
`GGUFWriter` (the llama.cpp project's own Python package), in f16 or q8_0.

What llama.cpp's `convert_hf_to_gguf.py` does for Llama, and this module does the same way:
* tensors get llama.cpp's names (`gguf.get_tensor_name_map`), and the rows of `q_proj`/`k_proj` are
  permuted from the Hugging Face rotary layout (halves) back to the interleaved one llama.cpp expects;
* 1-D tensors (norms) stay f32; 2-D tensors become f16, or q8_0 when a row divides into 32-value blocks
  (else f16, as llama.cpp does); a tied output head is not written (llama.cpp reuses `token_embd`);
* the tokenizer goes in as a `gpt2` (byte-level BPE) vocabulary with its merges: normal tokens in the
  byte-level spelling, added tokens as their text, marked CONTROL when special (role tokens, EOS) and
  USER_DEFINED otherwise (n-gram tokens), ids with no token as `[PAD<id>]`; plus BOS/EOS/PAD ids, whether
  BOS is added, and the chat template.
We write it here instead of calling the script because the script is not part of the `gguf` package and
needs the whole llama.cpp checkout; the package's writer, tensor names and quantizers are used as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# llama.cpp's name for a byte-level pre-tokenizer, found from the shape of tokenizer.json's pre_tokenizer.
PRE_TOKENIZERS = {
    ("ByteLevel",): "gpt-2",
    ("Digits", "ByteLevel"): "smollm",  # SmolLM/SmolLM2: single digits, then GPT-2's split
}
QUANT_TYPES = {"f16": ("F16", "MOSTLY_F16"), "q8_0": ("Q8_0", "MOSTLY_Q8_0")}


class GGUFExportError(ValueError):
    """A model this writer cannot express in GGUF (message says why)."""


def permute_rotary(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's q/k row order (rotary halves) → llama.cpp's (interleaved pairs), per head.

    Same as `LlamaModel.permute` in llama.cpp's convert_hf_to_gguf.py.
    """
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's pre-tokenizer name for this byte-level BPE tokenizer, or GGUFExportError."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or (tokenizer_json.get("decoder") or {}).get("type") != "ByteLevel":
        raise GGUFExportError("only byte-level BPE tokenizers (GPT-2 style) can be written to GGUF here")
    if tokenizer_json.get("normalizer"):
        raise GGUFExportError("a tokenizer with a normalizer cannot be written to GGUF here")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    shape = tuple(s.get("type") for s in steps)
    if any(s.get("type") == "ByteLevel" and not s.get("use_regex", True) for s in steps) or \
            any(s.get("type") == "Digits" and not s.get("individual_digits") for s in steps):
        shape = ()
    if shape not in PRE_TOKENIZERS:
        raise GGUFExportError(f"pre-tokenizer {shape or pre.get('type')} has no llama.cpp equivalent known here")
    return PRE_TOKENIZERS[shape]


def vocabulary(tokenizer, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens and llama.cpp token types for ids 0..n_vocab-1 (as convert_hf_to_gguf's get_vocab_base)."""
    from gguf import TokenType

    if len(tokenizer) > n_vocab:
        raise GGUFExportError(f"the tokenizer has {len(tokenizer)} tokens but the model only {n_vocab} rows")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def merges(tokenizer_json: dict) -> list[str]:
    raw = (tokenizer_json.get("model") or {}).get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in raw]


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of plain text (llama.cpp's `add_bos_token`)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


def _hparams(config) -> dict:
    if getattr(config, "model_type", None) != "llama":
        raise GGUFExportError(f"GGUF export supports the Llama family; this model is {config.model_type!r}")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise GGUFExportError("rope scaling is not supported by this GGUF writer")
    n_head = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    return {"n_head": n_head, "n_head_kv": config.num_key_value_heads or n_head, "head_dim": head_dim,
            "rope_theta": float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))}


def _tensor_type(name: str, data: np.ndarray, quant: str):
    from gguf import GGMLQuantizationType

    if data.ndim == 1:
        return GGMLQuantizationType.F32
    if quant == "q8_0" and data.shape[-1] % 32 == 0:
        return GGMLQuantizationType.Q8_0
    return GGMLQuantizationType.F16


def write_gguf(model, tokenizer, hf_dir: Path, out_file: Path, quant: str, name: str,
               progress=lambda fraction: None) -> dict:
    """Write `model` (Llama, fp32) with the tokenizer saved in `hf_dir` to `out_file`; returns facts."""
    import gguf

    if quant not in QUANT_TYPES:
        raise GGUFExportError(f"quant must be one of {', '.join(QUANT_TYPES)}")
    config = model.config
    hp = _hparams(config)
    tok_json = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    pre = pre_tokenizer_name(tok_json)
    n_vocab = model.get_input_embeddings().weight.shape[0]
    tokens, types = vocabulary(tokenizer, n_vocab)
    tied = getattr(config, "tie_word_embeddings", False)

    writer = gguf.GGUFWriter(str(out_file), "llama")
    writer.add_name(name)
    writer.add_file_type(int(getattr(gguf.LlamaFileType, QUANT_TYPES[quant][1])))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(hp["n_head"])
    writer.add_head_count_kv(hp["n_head_kv"])
    writer.add_rope_dimension_count(hp["head_dim"])
    if hp["head_dim"] * hp["n_head"] != config.hidden_size:
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
    writer.add_rope_freq_base(hp["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges(tok_json))
    for role, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                           ("pad", tokenizer.pad_token_id)):
        if token_id is not None:
            getattr(writer, f"add_{role}_token_id")(int(token_id))
    writer.add_add_bos_token(adds_bos(tokenizer))
    writer.add_add_eos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    state = model.state_dict()
    counts: dict[str, int] = {}
    for i, (hf_name, tensor) in enumerate(state.items()):
        if tied and hf_name == "lm_head.weight":
            continue
        data = tensor.detach().to("cpu").float().numpy()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute_rotary(data, hp["n_head"])
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute_rotary(data, hp["n_head_kv"])
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GGUFExportError(f"tensor {hf_name!r} has no llama.cpp name")
        qtype = _tensor_type(gguf_name, data, quant)
        writer.add_tensor(gguf_name, gguf.quants.quantize(np.ascontiguousarray(data), qtype), raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
        progress((i + 1) / len(state))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    stops = [i for i, t in enumerate(types) if t == int(gguf.TokenType.CONTROL)]
    return {"pre_tokenizer": pre, "vocab_size": n_vocab, "tensor_types": counts, "tied_output": tied,
            "added_tokens": sum(1 for t in types if t == int(gguf.TokenType.USER_DEFINED)),
            "control_tokens": len(stops)}
