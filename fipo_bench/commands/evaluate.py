"""`fipo-bench eval` (sample and grade a checkpoint) and `fipo-bench score` (grade existing generations).

Module-level imports stay light; the evaluation code (and torch/transformers/vLLM) loads inside.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fipo_bench.commands.errors import fail

console = Console()


def _summary_table(summary: dict, title: str) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    low, high = summary["avg_at_k"], summary["avg_at_k"]
    if summary.get("avg_at_k_ci95"):
        low, high = summary["avg_at_k_ci95"]
    k = summary["k"]
    table.add_row("problems x samples", f"{summary['num_problems']} x {k}")
    table.add_row(f"avg@{k} (Pass@1)", f"{summary['avg_at_k']:.4f}  [95% CI {low:.4f}, {high:.4f}]")
    for n, value in summary["pass_at_k"].items():
        table.add_row(f"pass@{n}", f"{value:.4f}")
    table.add_row(f"cons@{k}", f"{summary['cons_at_k']:.4f}")
    for n, value in summary.get("maj_at_k", {}).items():
        table.add_row(f"maj@{n} (unbiased over subsets)", f"{value:.4f}")
    lengths = summary["response_length"]
    if lengths.get("mean") is not None:
        table.add_row(
            "length mean / median / p90 / max",
            f"{lengths['mean']:.1f} / {lengths['median']:.1f} / {lengths['p90']:.1f} / {lengths['max']}",
        )
    if summary.get("truncation_rate") is not None:
        table.add_row("truncation rate", f"{summary['truncation_rate']:.4f}")
    table.add_row("verdicts", ", ".join(f"{v} {n}" for v, n in summary["verdict_counts"].items() if n))
    return table


def _g_pass_table(summary: dict) -> Table | None:
    """G-Pass@k_tau (one row per k, one column per tau) and mG-Pass@k; None for summaries without them."""
    g_pass = summary.get("g_pass_at_k") or {}
    if not g_pass:
        return None
    taus = list(next(iter(g_pass.values())))
    table = Table(title="G-Pass@k_τ and mG-Pass@k (arXiv 2412.13147)", show_header=True)
    table.add_column("k")
    for tau in taus:
        table.add_column(f"τ={float(tau):g}", justify="right")
    table.add_column("mG-Pass@k", justify="right")
    for n, by_tau in g_pass.items():
        table.add_row(n, *(f"{by_tau[tau]:.4f}" for tau in taus), f"{summary['mg_pass_at_k'][n]:.4f}")
    return table


def print_summary(summary: dict, title: str) -> None:
    console.print(_summary_table(summary, title))
    if (g_pass := _g_pass_table(summary)) is not None:
        console.print(g_pass)


def default_out_dir(checkpoint: str, dataset: str) -> Path:
    """results/eval/<the checkpoint's whole path>/<dataset>, so that step-60 of two runs never share a
    directory: a local path relative to the working directory (absolute when outside it), a leading
    results/ dropped; a Hub id as org/name."""
    path = Path(checkpoint).expanduser()
    if path.exists():
        path = path.resolve()
        try:
            parts = path.relative_to(Path.cwd().resolve()).parts
        except ValueError:
            parts = path.parts[1:]
        if parts[:1] == ("results",):
            parts = parts[1:]
    else:
        parts = Path(checkpoint).parts
    return Path("results", "eval", *parts, dataset)


def check_backend(backend: str) -> None:
    """--backend names a backend that is installed (vLLM is an optional extra)."""
    import importlib.util

    from fipo_bench.evals.generate import resolve_backend

    if resolve_backend(backend) == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ImportError("--backend vllm: vLLM is not installed (pip install -e '.[vllm]' in the fipo-bench "
                          "checkout, on a GPU machine); --backend transformers works everywhere")


def eval_checkpoint(
    checkpoint: str = typer.Argument(
        ..., help="Hugging Face model directory (e.g. results/RUN/ALGO-seed0/checkpoints/step-60), Hub id, "
                  "or GGUF file."
    ),
    dataset: str = typer.Option("aime24", help="aime24, aime25, amc23, math500, gsm8k, a .jsonl/.parquet, or "
                                "a procedural task rg:<task>?option=value&... (its eval split)"),
    k: int | None = typer.Option(None, help="Samples per problem (preset: dapo 32, greedy 1)."),
    limit: int | None = typer.Option(None, help="Evaluate only the first N problems."),
    out: Path | None = typer.Option(
        None, help="Output directory (default: results/eval/<checkpoint path>/<dataset>)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an earlier evaluation in the output dir."),
    data_dir: Path | None = typer.Option(
        None, envvar="FIPO_BENCH_DATA", help="Offline directory with the named datasets (aime24.jsonl, ...)."
    ),
    preset: str = typer.Option("dapo", help="Sampling preset: dapo (k 32, T 1.0, top-p 0.7) or greedy."),
    temperature: float | None = typer.Option(None, help="Override the preset's temperature."),
    top_p: float | None = typer.Option(None, help="Override the preset's top-p."),
    max_new_tokens: int | None = typer.Option(None, help="Override the preset's response budget."),
    seed: int = typer.Option(0, help="Base seed; every (problem, sample) derives its own."),
    template: str = typer.Option("dapo", help="Prompt template: dapo, boxed, tags (<answer> tags), raw."),
    backend: str = typer.Option("auto", help="auto (vLLM on a GPU when installed), vllm or transformers."),
    batch_size: int = typer.Option(16, min=1, help="Sequences per batch (transformers backend)."),
    timeout: float = typer.Option(5.0, min=0.001, help="Seconds allowed per symbolic answer check."),
) -> None:
    """Sample k responses per problem from CHECKPOINT, grade them, write generations.jsonl + summary.json."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fipo_bench.evals.datasets import load_dataset
    from fipo_bench.evals.generate import sampling_config
    from fipo_bench.evals.io import check_free
    from fipo_bench.evals.prompts import format_prompt
    from fipo_bench.evals.runner import evaluate_checkpoint, validate_checkpoint
    from fipo_bench.tasks import dataset_label

    # Every input is checked before the model loads: a mistake costs seconds, not a sampling run.
    try:
        validate_checkpoint(checkpoint)
        config = sampling_config(
            preset, k=k, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
        )
        format_prompt("", template)
        check_backend(backend)
        problems = load_dataset(dataset, data_dir, limit=limit)
        dataset_name = dataset_label(dataset)  # the directory name a run's evals use
        out_dir = out or default_out_dir(checkpoint, dataset_name)
        check_free(out_dir, force)
    except (ValueError, OSError, ImportError) as e:
        fail(e)
    columns = (TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("sampling", total=len(problems) * config.k)
            _, summary = evaluate_checkpoint(
                checkpoint, problems, config, dataset=dataset_name, template=template, backend=backend,
                batch_size=batch_size, timeout=timeout, out_dir=out_dir,
                on_progress=lambda n: progress.advance(task, n),
            )
    except OSError as e:  # files and network only (a Hub repo that is not there, a full disk), never a bug
        fail(e)
    print_summary(summary, f"{dataset_name}: {checkpoint}")
    console.print(f"wrote {out_dir}/generations.jsonl and summary.json", markup=False)


def score(
    generations: Path = typer.Argument(..., help="JSON lines: response + problem_id, or response + answer."),
    dataset: str | None = typer.Option(None, help="Dataset the problem ids refer to (gold answers)."),
    data_dir: Path | None = typer.Option(None, envvar="FIPO_BENCH_DATA", help="Offline dataset directory."),
    out: Path | None = typer.Option(None, help="Also write graded generations.jsonl + summary.json here."),
    force: bool = typer.Option(False, "--force", help="Overwrite an earlier evaluation in --out."),
    timeout: float = typer.Option(5.0, min=0.001, help="Seconds allowed per symbolic answer check."),
) -> None:
    """Grade generations made by any tool and print (and with --out, write) the evaluation summary."""
    from fipo_bench.evals.io import check_free, write_eval_dir
    from fipo_bench.evals.runner import score_generations
    from fipo_bench.io import iter_jsonl

    try:
        if not generations.is_file():
            raise FileNotFoundError(f"{generations}: no such file")
        if out is not None:
            check_free(out, force)
        rows = list(iter_jsonl(generations))
        graded, summary = score_generations(
            rows, source=str(generations), dataset=dataset, data_dir=data_dir, timeout=timeout
        )
    except (ValueError, OSError, ImportError) as e:
        fail(e)
    print_summary(summary, f"scored {generations}")
    if out is not None:
        write_eval_dir(out, graded, summary)
        console.print(f"wrote {out}/generations.jsonl and summary.json", markup=False)
