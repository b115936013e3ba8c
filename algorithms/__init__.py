"""The algorithms: GRPO, DAPO, FIPO, the zoo they are compared with (README "Algorithms") and any
registered plugin, behind one contract (`base.Algorithm`).

    from fipo_bench.algorithms import get_algorithm
    alg = get_algorithm("fipo", half_life=16)

Every module in this package is imported on the first registry lookup, so a new algorithm is one file
here with a `@register_algorithm("name")` class (or an entry point in the `fipo_bench.algorithms` group).
"""

from fipo_bench.algorithms.base import Algorithm, hyperparameter, setting
from fipo_bench.algorithms.dapo import DAPO
from fipo_bench.algorithms.fipo import FIPO
from fipo_bench.algorithms.grpo import GRPO, PolicyGradient
from fipo_bench.algorithms.ppo import CRITIC_METRICS, critic_metrics
from fipo_bench.registry import get_algorithm, list_algorithms, register_algorithm, register_variant

__all__ = [
    "CRITIC_METRICS", "DAPO", "FIPO", "GRPO", "Algorithm", "PolicyGradient", "critic_metrics",
    "get_algorithm", "hyperparameter", "list_algorithms", "register_algorithm", "register_variant", "setting",
]
