"""Wilson intervals for rates and the cluster bootstrap for scale traits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaksweep.stats import Z_95, cluster_bootstrap, wilson


def test_wilson_hand_computed():
    rate, low, high = wilson(8, 10)
    assert rate == 0.8
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # another one by the closed form: 1/4 with z = 1.96
    rate, low, high = wilson(1, 4)
    z2 = Z_95**2
    centre = (0.25 + z2 / 8) / (1 + z2 / 4)
    half = Z_95 * math.sqrt(0.25 * 0.75 / 4 + z2 / 64) / (1 + z2 / 4)
    assert low == pytest.approx(centre - half) and high == pytest.approx(centre + half)
    assert Z_95 == pytest.approx(1.959964, abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5, 30, 1000])
def test_wilson_extremes_stay_in_the_unit_interval(n):
    rate, low, high = wilson(0, n)
    assert rate == 0.0 and low == 0.0 and 0.0 < high < 1.0
    rate, low, high = wilson(n, n)
    assert rate == 1.0 and high == 1.0 and 0.0 < low < 1.0


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.data())
def test_wilson_contains_the_rate_and_is_symmetric(n, data):
    k = data.draw(st.integers(0, n))
    rate, low, high = wilson(k, n)
    assert 0.0 <= low <= rate <= high <= 1.0
    _, low2, high2 = wilson(n - k, n)
    assert low2 == pytest.approx(1 - high, abs=1e-12) and high2 == pytest.approx(1 - low, abs=1e-12)


def test_wilson_narrows_with_n():
    widths = [wilson(n // 2, n)[2] - wilson(n // 2, n)[1] for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2]


@pytest.mark.parametrize("k, n", [(0, 0), (1, -1), (-1, 10), (11, 10)])
def test_wilson_rejects_bad_counts(k, n):
    with pytest.raises(ValueError):
        wilson(k, n)


@pytest.mark.parametrize("p, n", [(0.3, 100), (0.1, 200), (0.5, 40)])
def test_wilson_coverage_is_near_95_percent(p, n):
    rng = np.random.default_rng(20240611)
    draws = rng.binomial(n, p, size=1000)
    covered = sum(low <= p <= high for _, low, high in (wilson(int(k), n) for k in draws))
    assert 0.93 <= covered / 1000 <= 0.97


# --- cluster bootstrap ----------------------------------------------------------------------------


def test_bootstrap_mean_is_the_sample_mean_and_inside_the_interval():
    clusters = [[1.0, 2.0, 3.0], [10.0], [4.0, 4.0], [0.0, 5.0, 5.0, 6.0]]
    mean, low, high = cluster_bootstrap(clusters, n_boot=500)
    assert mean == pytest.approx(40.0 / 10)
    assert low <= mean <= high and low < high


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10).map(float), min_size=1, max_size=5), min_size=2, max_size=15), st.integers(0, 99))
def test_bootstrap_properties(clusters, seed):
    flat = [v for c in clusters for v in c]
    mean, low, high = cluster_bootstrap(clusters, n_boot=300, seed=seed)
    assert mean == pytest.approx(sum(flat) / len(flat))
    assert min(flat) - 1e-9 <= low <= high <= max(flat) + 1e-9
    assert cluster_bootstrap(clusters, n_boot=300, seed=seed) == (mean, low, high)  # seeded: reproducible


def test_bootstrap_edge_cases():
    assert cluster_bootstrap([[2.0, 4.0]]) == (3.0, 3.0, 3.0)  # one cluster: no spread to resample
    assert cluster_bootstrap([[], [5.0], []]) == (5.0, 5.0, 5.0)  # empty clusters are ignored
    with pytest.raises(ValueError):
        cluster_bootstrap([[], []])


def clustered_sample(rng, n_clusters: int, per_cluster: int, mu: float, between_sd: float, within_sd: float):
    effects = rng.normal(mu, between_sd, size=n_clusters)
    return [list(rng.normal(e, within_sd, size=per_cluster)) for e in effects]


def test_bootstrap_coverage_on_clustered_data():
    rng = np.random.default_rng(7)
    mu, covered = 5.0, 0
    for rep in range(400):
        clusters = clustered_sample(rng, 40, 4, mu, between_sd=2.0, within_sd=0.5)
        _, low, high = cluster_bootstrap(clusters, n_boot=1000, seed=rep)
        covered += low <= mu <= high
    # The percentile bootstrap runs slightly narrow with 40 clusters (about 93% over many reps);
    # resampling single samples here (intra-cluster correlation ~0.94) would cover only about 60%.
    assert 0.88 <= covered / 400 <= 0.98


def test_resampling_clusters_is_wider_than_resampling_samples():
    """Highly correlated samples within a prompt: the naive bootstrap understates the uncertainty."""
    rng = np.random.default_rng(3)
    ratios = []
    for rep in range(20):
        clusters = clustered_sample(rng, 30, 8, 5.0, between_sd=2.0, within_sd=0.1)
        _, low, high = cluster_bootstrap(clusters, n_boot=1000, seed=rep)
        _, nlow, nhigh = cluster_bootstrap([[v] for c in clusters for v in c], n_boot=1000, seed=rep)
        ratios.append((high - low) / (nhigh - nlow))
    # design effect 1 + (m - 1) * icc ~ 8: the width ratio should be near sqrt(8) ~ 2.8
    assert min(ratios) > 1.8
    assert 2.2 < float(np.median(ratios)) < 3.5


def test_unequal_cluster_sizes_weigh_by_samples():
    mean, _, _ = cluster_bootstrap([[0.0] * 9, [10.0]], n_boot=200)
    assert mean == pytest.approx(1.0)  # per-sample mean, not the mean of cluster means (5.0)
