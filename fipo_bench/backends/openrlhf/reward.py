"""The reward file OpenRLHF loads with `--reward.remote_url <this file>` (it runs in the vLLM engines).

OpenRLHF 0.11 (openrlhf/utils/agent.py) imports this file by path and calls
`reward_func(queries, prompts, labels)` with `queries` = prompt + response as decoded text (special
tokens kept), one sample per call; it reads `rewards` (the reward the advantages start from),
`scores` (what dynamic filtering keeps a group on) and `extra_logs` (logged per sample).

rewards: +1 correct / -1 otherwise, as the local backend (DAPO eq. 9); length shaping happens later,
in the plugin (`alg.shape_rewards`). scores: correctness 0/1, so dynamic filtering keeps groups on
accuracy, not on the shaped reward. The checker: fipo_bench.evals (math datasets) or the built-in
task's own, chosen by $FIPO_BENCH_REWARD_TASK ("math" or "tiny").
Deviation from the local backend: OpenRLHF does not tell the reward whether a response was cut at the
length limit, so a truncated response whose text ends in a right answer counts as correct.
"""

from __future__ import annotations

import os
import re

import torch

from fipo_bench.backends.openrlhf.translate import ENV_REWARD_TASK
from fipo_bench.tasks import REWARD_CORRECT, REWARD_INCORRECT

# Special tokens the decoded query keeps at its end (<|im_end|>, <|endoftext|>, </s>, <eos>, ...).
_TRAILING_SPECIAL = re.compile(r"(?:\s*(?:<\|[^<>|]{1,40}\|>|</s>|<eos>|<pad>))+\s*$")


def response_text(query: str, prompt: str) -> str:
    """The response part of a decoded query, without trailing special tokens."""
    response = query[len(prompt) :] if query.startswith(prompt) else query
    return _TRAILING_SPECIAL.sub("", response)


def _check(responses: list[str], golds: list[str]) -> list:
    task = os.environ.get(ENV_REWARD_TASK, "math")
    if task == "tiny":
        from fipo_bench.tiny.task import check  # every built-in task grades its final line alike

        return [check(response, gold) for response, gold in zip(responses, golds, strict=True)]
    if task != "math":
        raise ValueError(f"${ENV_REWARD_TASK}: expected 'math' or 'tiny', got {task!r}")
    from fipo_bench.evals import check_answers

    return check_answers(responses, golds)


def reward_func(queries: list[str], prompts: list[str], labels: list[str], **_unused) -> dict:
    """{"rewards": [N], "scores": [N] (0/1 correct), "extra_logs": {"accuracy", "no_answer"}: [N]}."""
    responses = [response_text(query, prompt) for query, prompt in zip(queries, prompts, strict=True)]
    results = _check(responses, [str(label) for label in labels])
    correct = torch.tensor([result.verdict == "correct" for result in results], dtype=torch.float32)
    no_answer = torch.tensor([result.verdict == "no_answer" for result in results], dtype=torch.float32)
    rewards = torch.where(correct.bool(), REWARD_CORRECT, REWARD_INCORRECT)
    return {
        "rewards": rewards,
        "scores": correct,
        "extra_logs": {"accuracy": correct, "no_answer": no_answer},
    }
