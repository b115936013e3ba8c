"""`--backend openrlhf`: the comparison on OpenRLHF 0.11's Ray trainer (vLLM rollouts, DeepSpeed), with
our algorithms plugged in. Modules: launcher (the backend: the algorithm x seed matrix), translate
(config -> OpenRLHF flags), plugin + patches (inside the Ray workers), reward (the --reward.remote_url
file), driver (one job), metrics (tensorboard -> metrics.jsonl). Importing this package loads none of them.
"""
