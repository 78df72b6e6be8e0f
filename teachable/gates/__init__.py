"""Gates as pre-specified tests, one function per gate, one module per phase (`core` holds what they
share)."""

from teachable.gates.core import (
    FAIL,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    PASS,
    POWER,
    STATUSES,
    above_threshold,
    decide,
    holm,
    min_detectable_difference,
    verdict,
)
from teachable.gates.cpt import (
    P_BASE_EDGES,
    correlation_n_needed,
    correlation_power,
    cpt_validity,
    cpt_vs_leverage,
    p_base_strata,
    q1_beats_q2,
    spearman_permutation,
    split_half_reliability,
    stratified_spearman,
)

__all__ = [
    "FAIL",
    "INCONCLUSIVE",
    "NOT_APPLICABLE",
    "PASS",
    "POWER",
    "STATUSES",
    "above_threshold",
    "decide",
    "holm",
    "min_detectable_difference",
    "verdict",
    "P_BASE_EDGES",
    "correlation_n_needed",
    "correlation_power",
    "cpt_validity",
    "cpt_vs_leverage",
    "p_base_strata",
    "q1_beats_q2",
    "spearman_permutation",
    "split_half_reliability",
    "stratified_spearman",
]
