"""Import OpenRLHF's modules on a machine without a GPU (tests, dry checks).

OpenRLHF 0.11 imports flash_attn and vllm at module load; both are CUDA-only packages. Inside
`stubbed_gpu_modules()` those names resolve to stand-ins where they are not installed (as OpenRLHF's own
tests do); on exit sys.meta_path is restored and the stand-ins and every openrlhf module imported
meanwhile are dropped, so nothing patched or stubbed leaks into later imports.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import sys
from unittest import mock

GPU_ONLY_MODULES = (
    "flash_attn",
    "flash_attn.bert_padding",
    "flash_attn.utils",
    "flash_attn.utils.distributed",
    "vllm",
    "vllm.inputs",
    "vllm.utils",
)


@contextlib.contextmanager
def stubbed_gpu_modules():
    saved_modules, saved_meta_path = dict(sys.modules), list(sys.meta_path)
    stubbed = []
    for name in GPU_ONLY_MODULES:
        if name not in sys.modules:
            stub = mock.MagicMock(name=name)
            stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = stub
            stubbed.append(name)
    try:
        yield
    finally:
        sys.meta_path[:] = saved_meta_path
        # A real vllm (the CPU build) imported meanwhile stays: importing it again would register its
        # torch operators twice, which torch refuses.
        for name in list(sys.modules):
            if name not in saved_modules and (name.split(".")[0] == "openrlhf" or name in stubbed):
                del sys.modules[name]
        for name in GPU_ONLY_MODULES:
            if name in saved_modules:
                sys.modules[name] = saved_modules[name]
