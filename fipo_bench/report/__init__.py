"""`fipo-bench report`: compare algorithms across seeds from a results/<run> directory.

Reads only the files of the results layout (fipo_bench.results, results/README.md). Modules, each
importing only those before it: data (read a results directory) and stats (pure statistics, training runs
as the unit) <- curves (compute-performance fits) <- compare (the numbers: aggregates, seed-level
comparisons, fits, learning speed) <- tables and plots <- render (the markdown, HTML, CSV and PNG files).
New training metrics reach the curve plots by a line in plots.TRAINING_PANELS (metric name, title, axis).
"""

from fipo_bench.report.compare import Report, build_report
from fipo_bench.report.render import write_report, write_report_files
from fipo_bench.report.tables import Table, all_tables

__all__ = ["Report", "Table", "all_tables", "build_report", "write_report", "write_report_files"]
