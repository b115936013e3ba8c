"""The local backend: one process per run on this machine's CPU or GPU.

`matrix` is the backend (`LocalBackend`: checks, then the algorithms x seeds matrix); each run is
`one_run.execute`, called in the matrix's process one after the other, or as Ray tasks by `ray_dispatch`
(two and more at once); `trainer` is the training loop of one run.
"""
