"""The built-in model: a small Qwen2 (about 1M parameters) built from a `transformers` config.

Same architecture as the Qwen2.5 models the FIPO paper trains, so the checkpoint loads with
`AutoModelForCausalLM` (and vLLM); only the sizes are tiny.
"""

from __future__ import annotations


def build_model(
    *,
    vocab_size: int,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    ffn_size: int,
    max_length: int,
):
    """A randomly initialised `Qwen2ForCausalLM` (seed the torch RNG before calling for determinism)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=ffn_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_length,
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        use_cache=True,
    )
    return Qwen2ForCausalLM(config)
