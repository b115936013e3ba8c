"""The --reward.remote_url file, loaded and called the way OpenRLHF 0.11.2 does it (SingleTurnAgentExecutor),
returns the answer checkers' verdicts: +1/-1 rewards, 0/1 correctness as the dynamic-filtering score."""

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("openrlhf", reason="OpenRLHF backend tests need openrlhf (installed by .ci/run)")

from openrlhf_stubs import stubbed_gpu_modules  # noqa: E402

from fipo_bench.backends.openrlhf import reward, translate  # noqa: E402
from fipo_bench.evals import check_answer  # noqa: E402
from fipo_bench.tiny import TinyTask  # noqa: E402

PROMPT = "Solve: what is 20 + 5? The last line of your response should be of the form Answer: $Answer"
SAMPLES = [  # (response as decoded by OpenRLHF, special tokens kept; gold label)
    ("20 + 5 = 25.\nAnswer: 25<|im_end|>", "025"),  # AIME-style gold with a leading zero
    ("So the answer is \\boxed{\\frac{1}{2}}.<|endoftext|>", "0.5"),
    ("20 + 5 = 26.\nAnswer: 26</s>", "25"),
    ("I am not sure.", "25"),  # no answer: the prompt's "Answer: $Answer" must not be graded
]


def call_like_openrlhf(queries, prompts, labels):
    """OpenRLHF's own loader and call path for a reward file (openrlhf/utils/agent.py)."""
    with stubbed_gpu_modules():
        from openrlhf.utils.agent import SingleTurnAgentExecutor

        executor = SingleTurnAgentExecutor(remote_rm_url=str(Path(reward.__file__)))
        return asyncio.run(executor._fetch_rewards_via_func(queries, prompts, labels))


def test_reward_file_returns_the_math_checkers_verdicts(monkeypatch):
    monkeypatch.setenv(translate.ENV_REWARD_TASK, "math")
    results = call_like_openrlhf([PROMPT + r for r, _ in SAMPLES], [PROMPT] * 4, [g for _, g in SAMPLES])
    verdicts = [check_answer(reward.response_text(PROMPT + r, PROMPT), g).verdict for r, g in SAMPLES]
    assert verdicts == ["correct", "correct", "incorrect", "no_answer"]  # hand-checked expectations
    for info, verdict in zip(results, verdicts, strict=True):  # one sample per call, as OpenRLHF calls it
        correct = verdict == "correct"
        assert info["rewards"].tolist() == [1.0 if correct else -1.0]
        assert info["scores"].tolist() == [float(correct)]
        assert info["extra_logs"]["accuracy"].tolist() == [float(correct)]
        assert info["extra_logs"]["no_answer"].tolist() == [float(verdict == "no_answer")]


def test_reward_file_uses_the_tiny_tasks_checker(monkeypatch):
    monkeypatch.setenv(translate.ENV_REWARD_TASK, "tiny")
    problem = TinyTask(seed=0).train_problems(1)[0]
    responses = [f"Answer: {problem.answer}<|endoftext|>", f"Answer: {int(problem.answer) + 1}", "no idea"]
    out = reward.reward_func(
        [problem.problem + r for r in responses], [problem.problem] * 3, [problem.answer] * 3
    )
    expected = [
        TinyTask.check(reward.response_text(problem.problem + r, problem.problem), problem.answer).verdict
        for r in responses
    ]
    assert expected == ["correct", "incorrect", "no_answer"]
    assert out["scores"].tolist() == [1.0, 0.0, 0.0] and out["rewards"].tolist() == [1.0, -1.0, -1.0]


def test_unknown_reward_task_is_an_error(monkeypatch):
    monkeypatch.setenv(translate.ENV_REWARD_TASK, "chess")
    with pytest.raises(ValueError, match="FIPO_BENCH_REWARD_TASK"):
        reward.reward_func(["q"], ["q"], ["1"])
