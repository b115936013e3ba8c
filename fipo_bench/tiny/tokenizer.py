"""The tiny model's tokenizer: one token per character of the task, plus ``Answer:`` as one token.

Built in code with the `tokenizers` library and wrapped as a `transformers` fast tokenizer, so it
saves with the checkpoint and `AutoTokenizer` (hence vLLM) loads it back. It has to be a Qwen2-style
byte-level BPE: for a checkpoint whose config says ``model_type: qwen2``, transformers 5 always loads
the tokenizer as `Qwen2Tokenizer`, which rebuilds its own pipeline (NFC, Qwen2's split regex, byte
level) from the saved vocabulary and merges and ignores any other pipeline in ``tokenizer.json``.
Every task character is printable ASCII, which byte-level encoding maps to itself, so the vocabulary is
the task's alphabet with no merges; ``Answer:`` is an added token (matched before the split).
No special token is added on encode, so ``decode(encode(text)) == text`` for every task string;
characters outside the alphabet are dropped by the BPE (it has no unknown token).
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from fipo_bench.tiny.task import ANSWER_PREFIX

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
# Every character a prompt or response of a built-in task can contain (``Answer:`` aside).
TASK_CHARS = "0123456789+-=;?"
# Qwen2's pre-tokenization split (transformers' Qwen2Tokenizer, the GPT-4 style pattern); the loaded
# tokenizer uses it, so the built one must too.
_QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_tokenizer():
    """A `PreTrainedTokenizerFast` with pad/bos/eos; ids are stable (the order of this module's lists)."""
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([PAD, BOS, EOS, ANSWER_PREFIX, *TASK_CHARS])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([PAD, BOS, EOS])
    tokenizer.add_tokens([AddedToken(ANSWER_PREFIX, special=False, normalized=False)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS)
