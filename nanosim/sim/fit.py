"""Fit the roofline's coefficients to measured step times (nonnegative least squares).

The roofline step time (see costmodel.py) is, for a fixed choice of which side of each
max() is the larger ("branch"), linear in eight nonnegative coefficients

    theta = (step_overhead_s, per_seq_overhead_s, u_gemm, u_bytes, u_attn, u_link,
             link_latency_s, u_host)          u_x = seconds per FLOP / byte = 1 / achieved rate

so we alternate: fix the branches at the current theta, solve a nonnegative least-squares
problem for theta, recompute the branches, until they stop changing (a few rounds). Rows
are divided by the measured time, so the fit minimises *relative* error (step times span
three decades). Columns are scaled by the prior theta (the default roofline), and a weak
ridge row pulls each coefficient towards its prior: coefficients the data cannot identify
(link terms at tp=1, swap when nothing was swapped, attention FLOPs when no point is
attention-bound) stay at the prior instead of drifting to 0 or infinity. At a fixed tp the
hop latency is a constant per step, so only step_overhead + hops x latency is identified
(their split follows the prior); a profile is per tp, so predictions do not depend on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanosim.core.batch import StepShape
from nanosim.sim.costmodel import RooflineCostModel

PARAMS = ("step_overhead_s", "per_seq_overhead_s", "u_gemm", "u_bytes", "u_attn", "u_link",
          "link_latency_s", "u_host", "eager_overhead_s")


def nnls(A: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """argmin ||A x - b||_2 subject to x >= 0 (Lawson & Hanson 1974 active-set method)."""
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = A.T @ (b - A @ x)
    tol = 10 * np.finfo(float).eps * np.linalg.norm(A, 1) * max(m, n)
    max_iter = max_iter or 3 * n + 30
    for _ in range(max_iter):
        if passive.all() or w[~passive].max(initial=-np.inf) <= tol:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        for _inner in range(n + 1):
            z = np.zeros(n)
            if not passive.any():
                break
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > tol).all():
                x = z
                break
            # Step back to the boundary and drop the variables that hit zero.
            neg = passive & (z <= tol)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = A.T @ (b - A @ x)
    return x


def _theta(rm: RooflineCostModel) -> np.ndarray:
    return np.array([rm.step_overhead_s, rm.per_seq_overhead_s, rm._u_flops, rm._u_bytes,
                     rm._u_attn, rm._u_link, rm.link_latency_s, rm._u_host, rm.eager_overhead_s])


def model_from_theta(prior: RooflineCostModel, theta: np.ndarray) -> RooflineCostModel:
    """A RooflineCostModel like ``prior`` whose coefficients are ``theta``."""
    g = prior.gpu
    inv = lambda u: 1.0 / u if u > 0 else float("inf")  # noqa: E731
    return RooflineCostModel(
        prior.model, g, prior.tp, prior.dtype_bytes,
        step_overhead_s=float(theta[0]), per_seq_overhead_s=float(theta[1]),
        gemm_efficiency=inv(theta[2] * g.bf16_flops_per_s),
        hbm_efficiency=inv(theta[3] * g.hbm_bytes_per_s),
        attn_efficiency=inv(theta[4] * g.bf16_flops_per_s),
        link_efficiency=inv(theta[5] * g.link_bytes_per_s),
        link_latency_s=float(theta[6]), host_link_bytes_per_s=inv(theta[7]),
        eager_overhead_s=float(theta[8]),
        block_size_tokens=prior.block_size_tokens)


def _resource_matrix(prior: RooflineCostModel, shapes: list[StepShape]) -> dict[str, np.ndarray]:
    rows = [prior.resources(s) for s in shapes]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def _predict(R: dict[str, np.ndarray], th: np.ndarray) -> np.ndarray:
    o, s, uf, ub, ua, ul, lat, uh, eo = th
    return (R["steps"] * o + R["seqs"] * s + R["eager_steps"] * eo
            + np.maximum(R["gemm_flops"] * uf, R["gemm_bytes"] * ub)
            + np.maximum(R["prefill_attn_flops"] * ua, R["prefill_attn_bytes"] * ub)
            + np.maximum(R["decode_attn_flops"] * ua, R["decode_attn_bytes"] * ub)
            + R["link_bytes"] * ul + R["link_hops"] * lat + R["swap_bytes"] * uh)


def _design(R: dict[str, np.ndarray], th: np.ndarray) -> np.ndarray:
    """Columns of the branch-fixed linear model at theta (one per PARAMS entry)."""
    uf, ub, ua = th[2], th[3], th[4]
    cols = np.zeros((len(R["steps"]), len(PARAMS)))
    cols[:, 0] = R["steps"]
    cols[:, 1] = R["seqs"]
    g = R["gemm_flops"] * uf >= R["gemm_bytes"] * ub
    p = R["prefill_attn_flops"] * ua >= R["prefill_attn_bytes"] * ub
    d = R["decode_attn_flops"] * ua >= R["decode_attn_bytes"] * ub
    cols[:, 2] = np.where(g, R["gemm_flops"], 0.0)
    cols[:, 3] = (np.where(g, 0.0, R["gemm_bytes"]) + np.where(p, 0.0, R["prefill_attn_bytes"])
                  + np.where(d, 0.0, R["decode_attn_bytes"]))
    cols[:, 4] = np.where(p, R["prefill_attn_flops"], 0.0) + np.where(d, R["decode_attn_flops"], 0.0)
    cols[:, 5] = R["link_bytes"]
    cols[:, 6] = R["link_hops"]
    cols[:, 7] = R["swap_bytes"]
    cols[:, 8] = R["eager_steps"]
    return cols


# Typical magnitudes for priors that are zero (so the ridge row still has a scale).
_TYPICAL = np.array([1e-3, 1e-6, 1e-15, 1e-12, 1e-15, 1e-11, 1e-5, 1e-10, 1e-3])


@dataclass(frozen=True)
class FitResult:
    model: RooflineCostModel  # roofline with the fitted coefficients
    theta: dict[str, float]  # fitted coefficients by PARAMS name
    rel_rms: float  # root-mean-square relative error on the fitted points
    rel_max: float  # largest relative error on the fitted points
    rounds: int  # branch-assignment rounds until stable


def fit_roofline(prior: RooflineCostModel, shapes: list[StepShape], durations_s,
                 ridge: float = 1e-3, max_rounds: int = 30) -> FitResult:
    """Fit ``prior``'s coefficients to measured ``durations_s`` of ``shapes`` (module doc)."""
    y = np.asarray(durations_s, dtype=np.float64)
    if len(shapes) != len(y) or len(y) == 0:
        raise ValueError(f"need as many durations as shapes (>= 1), got {len(shapes)} / {len(y)}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("durations must be finite and > 0")
    R = _resource_matrix(prior, shapes)
    th0 = _theta(prior)
    scale = np.where(th0 > 0, th0, _TYPICAL)
    reg = np.sqrt(ridge) * np.eye(len(PARAMS))
    reg_b = np.sqrt(ridge) * th0 / scale  # 1 where the prior is positive, 0 where it is 0
    th, best, best_err, rounds = th0, th0, np.inf, 0
    seen: set[bytes] = set()
    for rounds in range(1, max_rounds + 1):
        X = _design(R, th)
        key = np.packbits(X > 0).tobytes()
        if key in seen:
            break  # branches repeat: converged (or cycling)
        seen.add(key)
        A = np.vstack([X * scale / y[:, None], reg])
        b = np.concatenate([np.ones(len(y)), reg_b])
        th = nnls(A, b) * scale
        err = np.sqrt(np.mean((_predict(R, th) / y - 1.0) ** 2))
        if err < best_err:
            best, best_err = th, err
    # Efficiencies of exactly 0 coefficients would be infinite: floor them at a tiny
    # fraction of the prior (the term then costs ~nothing, as the fit says).
    best = np.maximum(best, np.where(th0 > 0, th0 * 1e-6, 0.0))
    rel = _predict(R, best) / y - 1.0
    return FitResult(model=model_from_theta(prior, best),
                     theta={k: float(v) for k, v in zip(PARAMS, best)},
                     rel_rms=float(np.sqrt(np.mean(rel ** 2))), rel_max=float(np.abs(rel).max()),
                     rounds=rounds)
