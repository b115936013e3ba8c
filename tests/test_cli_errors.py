"""User errors of every subcommand are one `error:` line (brackets kept, exit code 2), said before
anything is written; `run` neither ignores an input nor fails on a field the user never set."""

import json

import typer
from typer.testing import CliRunner

from fipo_bench.cli import app
from fipo_bench.commands.errors import fail

runner = CliRunner()


def one_error_line(result) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_fail_prints_the_message_as_plain_text_on_one_line():
    tiny = typer.Typer()
    tiny.command()(lambda: fail("pip install -e '.[hub]' or [bold]x[/bold]\n  then retry"))
    result = runner.invoke(tiny, [], env={"COLUMNS": "20"})  # narrower than the message: still one line
    assert result.exit_code == 2
    assert result.output == "error: pip install -e '.[hub]' or [bold]x[/bold] then retry\n"


def test_run_refuses_a_dataset_it_would_ignore(tmp_path, fixture_data_dir):
    """Without --model the built-in model trains on its own task; the file used to be recorded anyway."""
    data = str(fixture_data_dir / "gsm8k_test.jsonl")
    for extra in (["--dry-run"], []):
        args = ["run", "--dataset", data, "--output-dir", str(tmp_path), *extra]
        line = one_error_line(runner.invoke(app, args))
        assert f"config field 'dataset': '{data}' needs a model to train" in line and "--model" in line
    assert list(tmp_path.iterdir()) == []


def test_run_with_a_model_and_a_dataset_evaluates_on_aime24_by_default(tmp_path, fixture_data_dir):
    from fipo_bench.config import build_config

    data = str(fixture_data_dir / "gsm8k_test.jsonl")
    # The config `run` resolves (its dry run also loads the model, which a Hub id cannot be offline).
    cfg = build_config("tiny", options={"model": "org/model", "dataset": data, "output_dir": str(tmp_path)})
    assert cfg.eval_datasets == ("aime24",)
    help_text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert "evaluated on aime24 unless --set eval_datasets=" in help_text


def fake_model_dir(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_run_model_errors_come_before_anything_is_written(tmp_path, fixture_data_dir, unreachable_hub):
    data = str(fixture_data_dir / "gsm8k_test.jsonl")
    base = ["run", "--algos", "grpo", "--dataset", data, "--output-dir", str(tmp_path / "out"),
            "--device", "cpu"]
    # A Hub id with the Hub out of reach: said at once, not after a minute of retries.
    result = runner.invoke(app, [*base, "--model", "nobody/no-such-model"])
    assert result.exit_code == 2, result.output
    assert f"error: config field 'model': model 'nobody/no-such-model' comes from the Hugging Face Hub, " \
           f"which does not answer at {unreachable_hub}" in result.output
    # A run directory instead of a checkpoint: which checkpoint to pass.
    run_dir = tmp_path / "results" / "r" / "grpo-seed0"
    fake_model_dir(run_dir / "checkpoints" / "step-4")
    (run_dir / "config.json").write_text(json.dumps({"algo": "grpo", "dtype": "auto"}))
    (run_dir / "status.json").write_text("{}")
    result = runner.invoke(app, [*base, "--model", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert f"is a fipo-bench results directory, not a checkpoint; pass a checkpoint directory such as " \
           f"{run_dir / 'checkpoints' / 'step-4'}" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_report_and_algos_errors(tmp_path):
    assert "not a directory" in one_error_line(runner.invoke(app, ["report", str(tmp_path / "nowhere")]))
    assert "Known algorithms" in one_error_line(runner.invoke(app, ["algos", "fpo"]))
