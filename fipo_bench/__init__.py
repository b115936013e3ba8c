"""fipo-bench: compare RL algorithms for LLM reasoning (GRPO, DAPO, FIPO) under identical conditions."""

__version__ = "0.1.0"
