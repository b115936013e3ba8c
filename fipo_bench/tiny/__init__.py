"""The built-in default: a generated arithmetic task, a tiny Qwen2 model and its SFT warm-up.

``fipo-bench run`` with no ``--model`` trains the checkpoint from `ensure_base_checkpoint` on
`TinyTask`, so the whole comparison runs on a laptop CPU in minutes with nothing to download.
"""

from fipo_bench.tiny.task import TinyTask
from fipo_bench.tiny.warmup import TinyRecipe, default_cache_dir, ensure_base_checkpoint

__all__ = ["TinyRecipe", "TinyTask", "default_cache_dir", "ensure_base_checkpoint"]
