"""The local backend: one process per run on this machine's CPU or GPU.

`trainer` holds the training loop of one run (sample, score, advantages, updates); `matrix` plans and runs
the algorithms x seeds matrix, one run after the other or two and more at once through `ray_dispatch`.
"""
