"""GGUF writing: llama.cpp's tensor names and q/k layout (checked by loading back with transformers' GGUF
loader), tied heads, the tokenizer as a gpt2 vocabulary with added tokens typed as llama.cpp expects."""

from __future__ import annotations

import pytest
import torch
from gguf import GGUFReader, TokenType

from matelix.export.gguf_writer import (
    GGUFExportError,
    permute_rotary,
    pre_tokenizer_name,
    vocabulary,
    write_gguf,
)
from matelix.export.hf import save_tokenizer


@pytest.fixture(scope="module")
def gqa_model(tiny_model_dir):
    """A small Llama with grouped-query attention (3 query heads per key head) and tied embeddings, the
    shape of SmolLM2, on the demo tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=True,
                         rope_theta=100000.0, max_position_embeddings=512)
    torch.manual_seed(1)
    return tokenizer, LlamaForCausalLM(config).eval()


def write(tmp_path, tokenizer, model, quant="f16"):
    save_tokenizer(tokenizer, tmp_path / "tok")
    facts = write_gguf(model, tokenizer, tmp_path / "tok", tmp_path / "m.gguf", quant, "test")
    return facts, tmp_path / "m.gguf"


def test_grouped_query_model_loads_back_with_the_same_logits(tmp_path, gqa_model):
    from transformers import AutoModelForCausalLM

    tokenizer, model = gqa_model
    facts, path = write(tmp_path, tokenizer, model)
    names = {t.name for t in GGUFReader(str(path)).tensors}
    assert "output.weight" not in names and {"token_embd.weight", "blk.1.attn_k.weight"} <= names
    assert facts["tied_output"] is True and facts["tensor_types"] == {"F32": 5, "F16": 15}
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="m.gguf", dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer.encode("Hallo, wie geht es dir heute?")])
    with torch.no_grad():
        diff = (model(ids).logits - loaded(ids).logits).abs().max().item()
    assert diff < 1e-2  # f16 rounding only; a wrong q/k permutation gives differences of order 1


def test_permutation_interleaves_the_rotary_halves_of_each_head():
    rows = torch.arange(8).float().reshape(8, 1).numpy()  # 2 heads of 4 rows: halves (0,1 | 2,3)
    assert permute_rotary(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_metadata_holds_tokenizer_merges_template_and_special_ids(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    _, path = write(tmp_path, tokenizer, model, "q8_0")
    fields = GGUFReader(str(path)).fields
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert len(fields["tokenizer.ggml.tokens"].contents()) == len(tokenizer)
    assert len(fields["tokenizer.ggml.merges"].contents()) > 1000
    assert fields["tokenizer.ggml.eos_token_id"].contents() == tokenizer.eos_token_id
    assert fields["tokenizer.ggml.add_bos_token"].contents() is False
    assert fields["tokenizer.chat_template"].contents() == tokenizer.chat_template
    assert fields["general.file_type"].contents() == 7  # MOSTLY_Q8_0


def test_added_tokens_are_control_when_special_and_user_defined_otherwise(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_tokens(["Hallo Welt"])  # an n-gram token: plain text with a space
    tokens, types = vocabulary(tokenizer, len(tokenizer) + 2)
    vocab = tokenizer.get_vocab()
    assert types[vocab["<|Assistentin|>"]] == TokenType.CONTROL
    assert (tokens[vocab["Hallo Welt"]], types[vocab["Hallo Welt"]]) == ("Hallo Welt", TokenType.USER_DEFINED)
    assert tokens[-1] == f"[PAD{len(tokenizer) + 1}]" and types[-1] == TokenType.UNUSED
    with pytest.raises(GGUFExportError):
        vocabulary(tokenizer, len(tokenizer) - 1)


@pytest.mark.parametrize("pre, name", [
    ({"type": "ByteLevel", "use_regex": True}, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "use_regex": True}]}, "smollm"),
    ({"type": "ByteLevel", "use_regex": False}, None), ({"type": "Metaspace"}, None)])
def test_pre_tokenizer_names_follow_llama_cpp(pre, name):
    tokenizer_json = {"model": {"type": "BPE"}, "decoder": {"type": "ByteLevel"}, "pre_tokenizer": pre}
    if name is None:
        with pytest.raises(GGUFExportError):
            pre_tokenizer_name(tokenizer_json)
    else:
        assert pre_tokenizer_name(tokenizer_json) == name


def test_only_the_llama_family_is_written(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.model_type = "gpt2"
    with pytest.raises(GGUFExportError, match="Llama family"):
        write(tmp_path, tokenizer, model)
