"""Where training runs: `local` (this machine, our own trainer) and `openrlhf` (OpenRLHF on a Ray cluster,
with our algorithms plugged into its workers). Both read the same RunConfig and write the same results
layout (fipo_bench.results), so `fipo-bench report` compares runs of either.
"""
