"""Synthetic workloads: length distributions + arrival processes -> canonical traces.

Named suites (``make_workload``), mean prompt -> mean output tokens:

    chatbot        128 -> 256
    rag           2048 ->  64
    code           512 -> 512
    summarization 4096 -> 256

Suite lengths are independent log-normals with the given mean and a coefficient of
variation of 0.5 (sigma^2 = ln(1 + cv^2), mu = ln(mean) - sigma^2 / 2), rounded to whole
tokens and clipped to [1, 4 * mean]. The clip removes ~0.1% of the mass and moves the mean
by < 0.5%. Arrivals are Poisson (``cv=1``) or Gamma renewal with another CV.

Also here: empirical lengths fitted to a loaded trace (``fit_lengths``, ``like_trace``),
multi-turn sessions whose turns share growing prefixes (``make_sessions``), shared system
prompts (``with_system_prompts``) and priority classes (``with_priorities``).

Seeds: arrivals and lengths use separate numpy streams derived from ``seed``, so changing
the length distribution does not move the arrivals (and vice versa); for a given seed the
first k requests of a longer workload (num_requests) equal a k-request one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from nanosim.core.request import Request
from nanosim.workload.generators import gamma_arrivals, poisson_arrivals

SUITES: dict[str, tuple[int, int]] = {
    "chatbot": (128, 256),
    "rag": (2048, 64),
    "code": (512, 512),
    "summarization": (4096, 256),
}
SUITE_CV = 0.5
SUITE_MAX_FACTOR = 4.0


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


# ----------------------------------------------------------------------------- lengths


@dataclass(frozen=True)
class LogNormalLengths:
    """Independent log-normal prompt and output lengths (means in tokens, shared CV)."""

    prompt_mean: float
    output_mean: float
    cv: float = SUITE_CV
    max_factor: float = SUITE_MAX_FACTOR  # clip at max_factor * mean

    def __post_init__(self) -> None:
        if not (self.prompt_mean >= 1 and self.output_mean >= 1 and self.cv >= 0
                and self.max_factor >= 1):
            raise ValueError(f"bad LogNormalLengths {self}")

    def _one(self, mean: float, z: np.ndarray) -> np.ndarray:
        s2 = math.log1p(self.cv**2)
        x = np.exp(math.log(mean) - s2 / 2 + math.sqrt(s2) * z)
        return np.clip(np.rint(x), 1, max(1, math.floor(self.max_factor * mean))).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        z = rng.standard_normal((n, 2))  # row i = request i: the first k do not depend on n
        return self._one(self.prompt_mean, z[:, 0]), self._one(self.output_mean, z[:, 1])


@dataclass(frozen=True)
class UniformLengths:
    """Uniform integer lengths, bounds inclusive (nano-vLLM's bench: (100, 1024) for both)."""

    prompt_range: tuple[int, int]
    output_range: tuple[int, int]

    def __post_init__(self) -> None:
        for lo, hi in (self.prompt_range, self.output_range):
            if not 1 <= lo <= hi:
                raise ValueError(f"bad range ({lo}, {hi})")

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        (a, b), (c, d) = self.prompt_range, self.output_range
        u = rng.random((n, 2))  # row i = request i: the first k do not depend on n
        return (a + np.floor(u[:, 0] * (b - a + 1))).astype(np.int64), \
            (c + np.floor(u[:, 1] * (d - c + 1))).astype(np.int64)


@dataclass(frozen=True)
class FixedLengths:
    prompt_tokens: int
    output_tokens: int

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return np.full(n, self.prompt_tokens), np.full(n, self.output_tokens)


@dataclass(frozen=True, eq=False)
class EmpiricalLengths:
    """Resamples (prompt, output) pairs of a trace jointly, with replacement.

    Keeps the marginals and the prompt/output correlation of the source; not its prefix
    structure (resampled requests are length-only) nor its priorities.
    """

    prompt: np.ndarray = field(repr=False)
    output: np.ndarray = field(repr=False)

    @classmethod
    def from_trace(cls, trace: Sequence[Request]) -> "EmpiricalLengths":
        if not trace:
            raise ValueError("cannot fit lengths to an empty trace")
        return cls(np.array([r.prompt_tokens for r in trace]),
                   np.array([r.output_tokens for r in trace]))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = rng.integers(0, len(self.prompt), n)
        return self.prompt[i], self.output[i]


def fit_lengths(trace: Sequence[Request]) -> EmpiricalLengths:
    return EmpiricalLengths.from_trace(trace)


def fit_arrivals(trace: Sequence[Request]) -> tuple[float, float]:
    """(mean rate in requests/s = (n-1)/span, CV of inter-arrival gaps) of a trace."""
    t = np.array([r.arrival_s for r in trace])
    if len(t) < 3 or t[-1] <= t[0]:
        raise ValueError("need >= 3 requests spanning > 0 s to fit arrivals")
    gaps = np.diff(t)
    return (len(t) - 1) / (t[-1] - t[0]), float(gaps.std() / gaps.mean())


# ----------------------------------------------------------------------------- building


def make_arrivals(rate_rps: float, *, num_requests: int | None = None,
                  duration_s: float | None = None, seed: int = 0, cv: float = 1.0) -> np.ndarray:
    """Poisson (cv == 1) or Gamma-renewal arrivals."""
    if cv == 1.0:
        return poisson_arrivals(rate_rps, num_requests=num_requests, duration_s=duration_s,
                                seed=seed)
    return gamma_arrivals(rate_rps, cv, num_requests=num_requests, duration_s=duration_s,
                          seed=seed)


def generate(arrival_s: Sequence[float], lengths, *, seed: int = 0,
             priority: int = 0) -> list[Request]:
    """Canonical trace from arrival times (any origin, sorted) and a length distribution."""
    t = np.asarray(arrival_s, dtype=np.float64)
    if t.ndim != 1 or len(t) == 0:
        raise ValueError("no arrivals (duration too short for the rate?)")
    if (np.diff(t) < 0).any():
        raise ValueError("arrival times must be sorted")
    p, o = lengths.sample(len(t), _rng(seed, 10))
    t = (t - t[0]).tolist()
    return [Request(i, t[i], int(p[i]), int(o[i]), priority) for i in range(len(t))]


def make_workload(name: str, rate_rps: float, num_requests: int | None = None,
                  duration_s: float | None = None, seed: int = 0, *, cv: float = 1.0,
                  priority: int = 0) -> list[Request]:
    """One of the SUITES at ``rate_rps`` (Poisson, or Gamma with ``cv``), seeded."""
    if name not in SUITES:
        raise ValueError(f"unknown workload {name!r}; known: {sorted(SUITES)}")
    lengths = LogNormalLengths(*SUITES[name])
    t = make_arrivals(rate_rps, num_requests=num_requests, duration_s=duration_s, seed=seed,
                      cv=cv)
    return generate(t, lengths, seed=seed, priority=priority)


def like_trace(trace: Sequence[Request], *, rate_rps: float | None = None,
               num_requests: int | None = None, duration_s: float | None = None,
               seed: int = 0, cv: float | None = None) -> list[Request]:
    """More of "the same" traffic: the trace's (prompt, output) pairs resampled jointly,
    arrivals Gamma-renewal at ``rate_rps`` (default: the trace's rate) with ``cv`` (default:
    the trace's inter-arrival CV). Default size: as many requests as the trace."""
    fit_rate, fit_cv = fit_arrivals(trace)
    if num_requests is None and duration_s is None:
        num_requests = len(trace)
    t = make_arrivals(rate_rps or fit_rate, num_requests=num_requests, duration_s=duration_s,
                      seed=seed, cv=fit_cv if cv is None else cv)
    return generate(t, fit_lengths(trace), seed=seed)


# ----------------------------------------------------------------------------- prefixes


def max_block_id(trace: Sequence[Request]) -> int:
    """Largest content-block id used in the trace, -1 if none."""
    return max((max(r.prefix_blocks) for r in trace if r.prefix_blocks), default=-1)


def make_sessions(session_rate_rps: float, *, num_sessions: int | None = None,
                  duration_s: float | None = None, seed: int = 0, turns_mean: float = 4.0,
                  think_time_s: float = 30.0, user_tokens_mean: float = 128.0,
                  output_tokens_mean: float = 256.0, length_cv: float = SUITE_CV,
                  system_prompt_tokens: int = 0, num_system_prompts: int = 1,
                  max_prompt_tokens: int | None = None, content_block_tokens: int = 64,
                  priority: int = 0) -> list[Request]:
    """Multi-turn chat sessions whose turns share growing prefixes.

    Sessions start as a Poisson process (``session_rate_rps``; ``duration_s`` bounds the
    starts, later turns may arrive after it). A session has Geometric(1/turns_mean) turns
    (>= 1); turn k arrives an Exponential(think_time_s) gap after turn k-1 (open loop: the
    gap does not wait for the previous answer). Turn k's prompt is the whole history:

        system prompt + sum_{i<k} (user_i + output_i) + user_k

    with user_i and output_i log-normal (means as given, CV ``length_cv``). The session's
    content is one stream of content blocks of ``content_block_tokens`` tokens
    (``prefix_blocks``), so turn k+1's first prompt_k tokens are exactly turn k's prompt
    (prompt_k + output_k tokens in fact: the answer is part of the stream). The system
    prompt (``system_prompt_tokens``, rounded UP to whole content blocks) is one of
    ``num_system_prompts`` shared ones, chosen uniformly per session. A session ends early
    when the next prompt would exceed ``max_prompt_tokens``.
    """
    if turns_mean < 1 or think_time_s < 0 or content_block_tokens < 1 or num_system_prompts < 1:
        raise ValueError("need turns_mean >= 1, think_time_s >= 0, content_block_tokens >= 1, "
                         "num_system_prompts >= 1")
    starts = poisson_arrivals(session_rate_rps, num_requests=num_sessions,
                              duration_s=duration_s, seed=seed)
    rng = _rng(seed, 11)
    lengths = LogNormalLengths(user_tokens_mean, output_tokens_mean, length_cv)
    P = content_block_tokens
    n_sys = -(-system_prompt_tokens // P)  # blocks per system prompt
    next_id = num_system_prompts * n_sys
    rows = []  # (arrival, session, turn, prompt, output, blocks)
    for s, start in enumerate(starts):
        n_turns = int(rng.geometric(1.0 / turns_mean))
        g = int(rng.integers(num_system_prompts))
        user, out = lengths.sample(n_turns, rng)
        gaps = rng.exponential(think_time_s, n_turns) if think_time_s > 0 else np.zeros(n_turns)
        stream = list(range(g * n_sys, (g + 1) * n_sys))
        ctx, t = n_sys * P, float(start)
        for k in range(n_turns):
            prompt = ctx + int(user[k])
            if max_prompt_tokens is not None and prompt > max_prompt_tokens:
                break
            need = -(-prompt // P)
            stream.extend(range(next_id, next_id + need - len(stream)))
            next_id = max(next_id, stream[-1] + 1)
            rows.append((t, s, k, prompt, int(out[k]), tuple(stream[:need])))
            ctx = prompt + int(out[k])
            t += float(gaps[k])
    if not rows:
        raise ValueError("no session turns generated (max_prompt_tokens too small?)")
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    t0 = rows[0][0]
    return [Request(i, r[0] - t0, r[3], r[4], priority, None, r[5], P)
            for i, r in enumerate(rows)]


def with_system_prompts(trace: Sequence[Request], *, num_groups: int,
                        system_prompt_tokens: int, seed: int = 0,
                        zipf_a: float = 0.0) -> list[Request]:
    """Prepend one of ``num_groups`` shared system prompts to every (length-only) request.

    Group popularity is proportional to 1 / (g + 1) ** zipf_a (0 = uniform). Each group's
    system prompt is ONE content block of exactly ``system_prompt_tokens`` tokens
    (prefix_block_tokens = system_prompt_tokens), so requests of a group share exactly those
    tokens and the rest of each prompt stays unique. prompt_tokens grows by
    system_prompt_tokens. Block ids start after the trace's largest id. Requests that
    already carry content (token ids or prefix blocks) are refused.
    """
    if num_groups < 1 or system_prompt_tokens < 1:
        raise ValueError("need num_groups >= 1 and system_prompt_tokens >= 1")
    if any(r.has_content for r in trace):
        raise ValueError("with_system_prompts needs length-only requests")
    w = 1.0 / np.arange(1, num_groups + 1) ** zipf_a
    groups = _rng(seed, 12).choice(num_groups, size=len(trace), p=w / w.sum())
    base = max_block_id(trace) + 1
    return [replace(r, prompt_tokens=r.prompt_tokens + system_prompt_tokens,
                    prefix_blocks=(base + int(g),), prefix_block_tokens=system_prompt_tokens)
            for r, g in zip(trace, groups)]


def with_priorities(trace: Sequence[Request], weights: Mapping[int, float],
                    seed: int = 0) -> list[Request]:
    """Assign priority classes at random: ``{0: 0.2, 1: 0.8}`` = 20% class 0 (runs first)."""
    classes = list(weights)
    p = np.array([weights[c] for c in classes], dtype=np.float64)
    if not classes or (p < 0).any() or p.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    pick = _rng(seed, 13).choice(len(classes), size=len(trace), p=p / p.sum())
    return [replace(r, priority=int(classes[k])) for r, k in zip(trace, pick)]
