"""The live view of `fipo-bench run`: per-run s/step and ETA, "run i of n", and the overall ETA, on a fake
clock."""

from rich.console import Console

from fipo_bench.commands.run import MatrixView, duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def render(view: MatrixView) -> str:
    console = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(view)
    return console.export_text()


def test_sequential_view_counts_runs_and_sums_the_remaining_work():
    clock = Clock()
    view = MatrixView(["grpo-seed0", "dapo-seed0", "fipo-seed0"], total_steps=10, parallel=1, clock=clock)
    assert view.title() == "fipo-bench run: run 1 of 3, overall ETA -"
    view.started("grpo-seed0", 0)
    clock.now = 5.0  # loading the model and evaluating step 0 took 5 s, then 2 s per step
    view.stepped("grpo-seed0", 1, {})
    row = view.rows["grpo-seed0"]
    assert view.seconds_per_step(row) == 5.0  # one step: all there is to go by
    clock.now = 11.0
    view.stepped("grpo-seed0", 4, {"accuracy": 0.5, "response_length_mean": 12.25})
    assert view.seconds_per_step(row) == 2.0 and view.eta(row) == 12.0
    # 6 steps left here, 10 in each queued run, all at the measured 2 s/step, one run at a time.
    assert view.overall_eta() == (6 + 10 + 10) * 2.0
    view.finished("grpo-seed0", "completed", 10)
    view.started("dapo-seed0", 0)
    assert view.title().startswith("fipo-bench run: run 2 of 3")
    text = render(view)
    assert "grpo-seed0" in text and "completed" in text and "10/10" in text
    assert "0.50" in text and "12.2" in text


def test_parallel_view_divides_the_work_over_the_runs_at_once_and_measures_from_a_resume():
    clock = Clock()
    view = MatrixView(["a-seed0", "b-seed0", "a-seed1", "b-seed1"], total_steps=10, parallel=2, clock=clock)
    view.started("a-seed0", 4)  # resumed at step 4: s/step counts only the steps done since
    view.started("b-seed0", 0)
    clock.now = 6.0
    view.stepped("a-seed0", 7, {})  # first events: measured since each run's start
    view.stepped("b-seed0", 2, {})
    assert view.seconds_per_step(view.rows["a-seed0"]) == 2.0
    assert view.seconds_per_step(view.rows["b-seed0"]) == 3.0
    # Remaining: 3 x 2 s + 8 x 3 s + two queued runs of 10 steps at the mean 2.5 s; two at a time.
    assert view.overall_eta() == (6 + 24 + 2 * 25) / 2
    view.evaluating("b-seed0", "tiny", 2)
    assert "eval tiny @ 2" in render(view)
    for run in view.rows:
        view.finished(run, "failed" if run == "b-seed1" else "completed", 10)
    assert view.overall_eta() == 0.0
    assert view.title() == "fipo-bench run: 4 of 4 runs done, 0 running, overall ETA 0s"


def test_durations_read_as_minutes_and_hours():
    assert [duration(s) for s in (None, 4.4, 59.6, 61, 3725)] == ["-", "4s", "1m00s", "1m01s", "1h02m"]
