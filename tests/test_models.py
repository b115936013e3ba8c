"""fipo_bench.models without a real model: what names a model, the GGUF conversion cache, stop tokens
and prompt encoding (the real GGUF model: tests/test_real_model.py)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from fipo_bench import models


def test_find_gguf_takes_a_file_or_the_only_one_in_a_directory(tmp_path):
    gguf = tmp_path / "m.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert models.find_gguf(gguf) == gguf
    assert models.find_gguf(tmp_path) == gguf
    (tmp_path / "other.GGUF").write_bytes(b"GGUF")
    with pytest.raises(FileNotFoundError, match=r"2 GGUF files \(m.Q4.gguf, other.GGUF\)"):
        models.find_gguf(tmp_path)
    (tmp_path / "config.json").write_text("{}")  # an HF directory: its GGUF files are not the model
    assert models.find_gguf(tmp_path) is None
    (tmp_path / "notes.txt").write_text("")
    assert models.find_gguf(tmp_path / "notes.txt") is None


def test_check_model_names_the_path_and_what_was_expected(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="config.json.*gguf"):
        models.check_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        models.check_model(str(tmp_path / "missing"))
    models.check_model("Qwen/Qwen2.5-0.5B")  # not local: a Hub id
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.setattr(models, "GGUF_NEEDS", ("gguf", "no_such_module_for_this_test"))
    with pytest.raises(ImportError, match=r"no_such_module_for_this_test.*\.\[gguf\]"):
        models.check_model(str(tmp_path / "m.gguf"))


@pytest.fixture
def fake_conversion(monkeypatch):
    """convert_gguf replaced by one that records its calls and writes a config.json."""
    calls = []

    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(gguf)
        config = {"model_type": "llama", "source": gguf.read_bytes().decode()}
        (out_dir / "config.json").write_text(json.dumps(config))
        (out_dir / "model.safetensors").write_bytes(b"")

    monkeypatch.setattr(models, "GGUF_NEEDS", ())
    monkeypatch.setattr(models, "convert_gguf", convert)
    return calls


def test_a_gguf_is_converted_once_per_content(tmp_path, fake_conversion):
    cache = tmp_path / "cache"
    source = tmp_path / "src"
    source.mkdir()
    gguf = source / "tiny.gguf"
    gguf.write_bytes(b"weights-1")
    first = Path(models.resolve_model(str(gguf), cache))
    assert first.parent == cache and first.name.startswith("gguf-tiny-")
    assert json.loads((first / "config.json").read_text())["source"] == "weights-1"
    assert models.resolve_model(str(gguf), cache) == str(first)
    assert models.resolve_model(str(source), cache) == str(first)  # the directory holding it
    assert len(fake_conversion) == 1
    gguf.write_bytes(b"weights-2")  # new content under the same name: a new entry
    second = Path(models.resolve_model(str(gguf), cache))
    assert second != first and json.loads((second / "config.json").read_text())["source"] == "weights-2"
    assert len(fake_conversion) == 2
    # An HF directory (a converted one included) and a Hub id pass through unchanged.
    assert models.resolve_model(str(second), cache) == str(second)
    assert models.resolve_model("org/name", cache) == "org/name"


def test_a_failed_conversion_leaves_no_entry(tmp_path, monkeypatch):
    def fail(gguf, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "GGUF_NEEDS", ())
    monkeypatch.setattr(models, "convert_gguf", fail)
    (tmp_path / "m.gguf").write_bytes(b"x")
    with pytest.raises(RuntimeError, match="disk full"):
        models.resolve_model(str(tmp_path / "m.gguf"), tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def fake_tokenizer(eos: int | None, template: str | None, vocab: dict[str, int]):
    return SimpleNamespace(eos_token_id=eos, chat_template=template, get_vocab=lambda: vocab,
                           name_or_path="fake")


CHATML = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
QWEN_VOCAB = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}


def test_stop_tokens_add_the_chat_templates_end_of_turn():
    # Qwen2.5 base: EOS <|endoftext|>, but a chat-templated prompt is answered by a turn ending in <|im_end|>.
    assert models.stop_token_ids(fake_tokenizer(151643, CHATML, QWEN_VOCAB)) == [151643, 151645]
    # Without a chat template the prompt is plain text: only the EOS ids end it.
    assert models.stop_token_ids(fake_tokenizer(151643, None, QWEN_VOCAB)) == [151643]
    # The generation config's ids count too (one or a list), without duplicates.
    config = SimpleNamespace(eos_token_id=[151645, 151643])
    assert models.stop_token_ids(fake_tokenizer(151643, None, QWEN_VOCAB), config) == [151643, 151645]
    assert models.stop_token_ids(fake_tokenizer(None, None, {}), SimpleNamespace(eos_token_id=7)) == [7]
    # A marker named in the template but missing from the vocabulary is not a token.
    assert models.stop_token_ids(fake_tokenizer(3, "<|eot_id|>", {"<eos>": 3})) == [3]
    with pytest.raises(ValueError, match="fake: no end-of-sequence token"):
        models.stop_token_ids(fake_tokenizer(None, None, {}))


class RecordingTokenizer:
    """Records what `encode_prompt` asks of a tokenizer."""

    def __init__(self, chat_template):
        self.chat_template, self.asked = chat_template, []

    def __call__(self, text, add_special_tokens):
        self.asked.append(add_special_tokens)
        return {"input_ids": [len(text)]}


def test_prompt_encoding_adds_special_tokens_only_to_plain_prompts():
    # A chat-templated prompt carries its own special tokens; a plain one gets the tokenizer's (a BOS).
    plain, chat = RecordingTokenizer(None), RecordingTokenizer(CHATML)
    assert models.encode_prompt(plain, "abc") == [3] and plain.asked == [True]
    assert models.encode_prompt(chat, "abcd") == [4] and chat.asked == [False]


def test_load_tokenizer_gives_a_pad_token(tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(tok_models.WordLevel({"<eos>": 0, "a": 1, "<unk>": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>")
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    tokenizer = models.load_tokenizer(str(tmp_path))
    assert tokenizer.pad_token == "<eos>" and tokenizer.pad_token_id == 0
