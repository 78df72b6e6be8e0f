"""Gates as pre-specified tests, one function per gate, one module per phase (`core` holds what they share)."""

from teachable.gates.core import (FAIL, INCONCLUSIVE, NOT_APPLICABLE, PASS, POWER, STATUSES, above_threshold, decide,
                                  holm, min_detectable_difference, verdict)
from teachable.gates.cpt import (correlation_n_needed, correlation_power, cpt_validity, q1_beats_q2,
                                 spearman_permutation, split_half_reliability)

__all__ = ["FAIL", "INCONCLUSIVE", "NOT_APPLICABLE", "PASS", "POWER", "STATUSES", "above_threshold", "decide", "holm",
           "min_detectable_difference", "verdict", "correlation_n_needed", "correlation_power", "cpt_validity",
           "q1_beats_q2", "spearman_permutation", "split_half_reliability"]
