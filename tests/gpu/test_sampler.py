"""Sampler semantics: greedy, top-k, top-p, temperature, seeded reproducibility."""
import numpy as np
import torch

from nanosim.gpu.sampler import sample, uniforms


def params(n, temperature=1.0, top_k=0, top_p=1.0):
    return (torch.full((n,), float(temperature)), torch.full((n,), top_k, dtype=torch.int32),
            torch.full((n,), float(top_p)))


def grid(n):
    """Evenly spaced uniforms: sampled frequencies then equal the kept probabilities."""
    return (torch.arange(n, dtype=torch.float32) + 0.5) / n


def test_greedy_is_argmax_whatever_the_filters():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    t, k, p = params(6, temperature=0.0, top_k=5, top_p=0.3)
    assert torch.equal(sample(logits, t, k, p, torch.rand(6)), logits.argmax(-1))
    assert torch.equal(sample(logits, t, k, p, torch.rand(6), all_greedy=True), logits.argmax(-1))


def test_top_k_one_is_greedy():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(1))
    t, k, p = params(64, temperature=2.0, top_k=1)
    assert torch.equal(sample(logits, t, k, p, grid(64)), logits.argmax(-1))


def test_top_p_keeps_the_nucleus_and_renormalises():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: 0.5, 0.3 | 0.15, 0.05
    n = 1000
    logits = probs.log().expand(n, 4)
    toks = sample(logits, *params(n, top_p=0.7), grid(n))
    counts = torch.bincount(toks, minlength=4).tolist()
    assert counts[0] == counts[2] == 0
    assert abs(counts[1] / n - 0.5 / 0.8) < 0.01 and abs(counts[3] / n - 0.3 / 0.8) < 0.01


def test_top_k_and_temperature_frequencies():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    n = 2000
    toks = sample(logits.expand(n, 4), *params(n, temperature=2.0, top_k=3), grid(n))
    freq = torch.bincount(toks, minlength=4).float() / n
    want = torch.softmax(logits[:3] / 2.0, 0)
    assert freq[3] == 0 and torch.allclose(freq[:3], want, atol=0.01)


def test_rows_are_independent_and_seeded():
    logits = torch.randn(4, 100, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.0, 1.0, 0.7, 1.0])
    k = torch.tensor([0, 0, 10, 1], dtype=torch.int32)
    p = torch.tensor([1.0, 0.9, 1.0, 1.0])
    u = torch.from_numpy(uniforms(np.array([5, 6, 7, 8]), np.array([10, 10, 10, 10])))
    a = sample(logits, t, k, p, u)
    assert torch.equal(a, sample(logits, t, k, p, u))
    assert a[0] == logits[0].argmax() and a[3] == logits[3].argmax()
    # row 1 alone gives the same token as inside the batch
    assert sample(logits[1:2], t[1:2], k[1:2], p[1:2], u[1:2]) == a[1]


def test_uniforms_are_deterministic_and_spread():
    u1 = uniforms(np.arange(20000), np.full(20000, 3), base_seed=9)
    assert np.array_equal(u1, uniforms(np.arange(20000), np.full(20000, 3), base_seed=9))
    assert not np.array_equal(u1, uniforms(np.arange(20000), np.full(20000, 4), base_seed=9))
    assert (0 <= u1).all() and (u1 < 1).all() and abs(u1.mean() - 0.5) < 0.01
    hist = np.histogram(u1, bins=10, range=(0, 1))[0]
    assert hist.min() > 1800


def test_uniforms_small_batch_path_equals_the_vectorised_one():
    """Batches of <= 16 rows hash with Python ints: the same bits as the numpy path."""
    rng = np.random.default_rng(0)
    for base in (0, 7, 2**31 + 5, 2**40 + 3):
        seeds, pos = rng.integers(-2**62, 2**62, 400), rng.integers(0, 2**31, 400)
        big = uniforms(seeds, pos, base)  # > 16 rows: numpy
        small = np.concatenate([uniforms(seeds[i:i + 8], pos[i:i + 8], base) for i in range(0, 400, 8)])
        np.testing.assert_array_equal(big, small)
