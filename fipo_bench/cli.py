"""The `fipo-bench` command line. Each subcommand lives in fipo_bench/commands/ and imports its heavy
dependencies (torch, transformers, matplotlib) inside the function, so `fipo-bench --help` stays fast."""

import typer

from fipo_bench.commands import algos, evaluate, report, run

app = typer.Typer(
    name="fipo-bench",
    help="Compare GRPO, DAPO and FIPO under identical conditions; evaluate checkpoints on AIME.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command("run")(run.run)
app.command("eval")(evaluate.eval_checkpoint)
app.command("score")(evaluate.score)
app.command("report")(report.report)
app.command("algos")(algos.algos)

if __name__ == "__main__":
    app()
