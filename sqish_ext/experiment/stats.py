"""Paired statistics over seeds, without scipy: Student's t-interval and the exact sign test."""

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache


def _t_density(t: float, df: int) -> float:
    log_scale = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_scale - (df + 1) / 2 * math.log1p(t * t / df))


def _t_cdf(t: float, df: int, intervals: int = 4000) -> float:
    """P(T ≤ t) for t ≥ 0: ½ plus Simpson's rule on the density over [0, t]."""
    h = t / intervals
    inner = sum((4 if i % 2 else 2) * _t_density(i * h, df) for i in range(1, intervals))
    return 0.5 + h / 3 * (_t_density(0.0, df) + inner + _t_density(t, df))


@lru_cache
def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with df degrees of freedom, for p in [½, 1), by bisection on the CDF."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs ½ ≤ p < 1 and df ≥ 1, got p={p}, df={df}")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """Mean of values with its two-sided t-interval (values are paired differences, one per seed)."""
    if len(values) < 2:
        raise ValueError("a t-interval needs at least two values")
    mean = statistics.fmean(values)
    half = t_quantile((1 + level) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half)


def sign_test(differences: list[float]) -> float:
    """Two-sided exact p-value of the sign test: zero differences dropped, the signs of the rest Binomial(n, ½)."""
    up = sum(d > 0 for d in differences)
    down = sum(d < 0 for d in differences)
    n = up + down
    tail = sum(math.comb(n, k) for k in range(min(up, down) + 1)) / 2**n
    return min(1.0, 2 * tail)
