"""Submit times of a profile's traffic (seeded, so a plan is reproducible)."""

from __future__ import annotations

import math
import random

from easel.plan.profile import Plan


def arrival_times(plan: Plan, rng: random.Random) -> list[float]:
    """Sorted submit times in seconds from 0 for ``plan.traffic`` over ``plan.duration_seconds``."""
    t = plan.traffic
    end = plan.duration_seconds
    if t.kind == "trace":
        return list(plan.trace)
    times: list[float] = []
    if t.kind in ("poisson", "bursts") and t.rate_per_second > 0:
        times += _poisson(t.rate_per_second, end, rng)
    if t.kind == "bursts" and t.burst_size > 0:
        k = 0
        while k * t.burst_every_seconds < end:
            times += [k * t.burst_every_seconds] * t.burst_size
            k += 1
    if t.kind == "diurnal":
        # Thinning (Lewis & Shedler): candidates at the peak rate, each kept with rate(t) / peak.
        peak = t.rate_per_second * (1 + t.amplitude)
        phase = t.peak_at_seconds - t.period_seconds / 4
        for c in _poisson(peak, end, rng):
            rate = t.rate_per_second * (
                1 + t.amplitude * math.sin(2 * math.pi * (c - phase) / t.period_seconds)
            )
            if rng.random() * peak < rate:
                times.append(c)
    return sorted(times)


def _poisson(rate: float, end: float, rng: random.Random) -> list[float]:
    out: list[float] = []
    now = 0.0
    while True:
        now += rng.expovariate(rate)
        if now >= end:
            return out
        out.append(now)
