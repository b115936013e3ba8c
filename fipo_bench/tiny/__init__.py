"""The built-in default: generated arithmetic tasks, a tiny Qwen2 model and its SFT warm-up.

``fipo-bench run`` with no ``--model`` trains the checkpoint from `ensure_base_checkpoint` on the task
of the config's ``tiny_task`` (`task_from_config`: `ChainTask` by default, `SumsTask` for the
``tiny-sums`` preset), so the whole comparison runs on a laptop CPU in minutes with nothing to download.
"""

from fipo_bench.tiny.task import TASKS, ChainTask, SumsTask, TinyTask, task_from_config
from fipo_bench.tiny.warmup import TinyRecipe, default_cache_dir, ensure_base_checkpoint

__all__ = ["TASKS", "ChainTask", "SumsTask", "TinyRecipe", "TinyTask", "default_cache_dir",
           "ensure_base_checkpoint", "task_from_config"]
