"""Oracle tests of the disentanglement scores: BetaVAE, FactorVAE, both MIGs, Gaussian total correlation, UDR.

Every FactorCodes table is built from arrays on a small synthetic grid (factor sizes 4, 5, 6), so the
right answer is known: codes equal to the factors score ~1, constant or random codes score ~0 or
chance, a factor copied into two latents has no gap, and the private arithmetic is checked against
brute force and closed forms. (The classifiers, mutual information, Spearman and Lasso are
scikit-learn's and scipy's own, so nothing here compares them with those libraries.)
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from vision_models.metrics.beta_vae_score import _sample_pair_features, compute_beta_vae_score
from vision_models.metrics.codes import FactorCodes
from vision_models.metrics.factor_vae_score import _factor_vae_score, _least_varying_latent, compute_factor_vae_score
from vision_models.metrics.mig import (
    _histogram_discretize,
    _log_mixture_density,
    _mig,
    _sampled_mig,
    compute_mig,
    compute_sampled_mig,
)
from vision_models.metrics.total_correlation import _gaussian_total_correlation, compute_gaussian_total_correlation
from vision_models.metrics.udr import _relative_strength, compute_udr, mean_kl_per_latent

SIZES = (4, 5, 6)
NAMES = ("colour", "size", "position")
GRID = np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), axis=1)  # (120, 3), flat-index order
CHANCE = 1 / len(SIZES)


def make_codes(mean: np.ndarray, logvar: np.ndarray | None = None) -> FactorCodes:
    return FactorCodes(
        NAMES, SIZES, np.asarray(mean, np.float32), None if logvar is None else np.asarray(logvar, np.float32)
    )


def identity_codes() -> FactorCodes:
    return make_codes(GRID)


def constant_codes(num_latents: int = 4) -> FactorCodes:
    return make_codes(np.full((len(GRID), num_latents), 0.7))


def noise_codes(num_latents: int = 4, seed: int = 0) -> FactorCodes:
    return make_codes(np.random.default_rng(seed).normal(size=(len(GRID), num_latents)))


def mixed_codes() -> FactorCodes:
    """Partly entangled codes, so that a score is neither 0 nor 1 and invariances are not trivially met."""
    mixing = np.array([[1.0, 0.3, 0.0, 0.2], [0.2, 1.0, 0.4, 0.0], [0.0, 0.5, 1.0, 0.3]])
    return make_codes(GRID @ mixing + 0.3 * np.random.default_rng(1).normal(size=(len(GRID), 4)))


def transformed(codes: FactorCodes, order: list[int], scale: np.ndarray, shift: float = 0.0) -> FactorCodes:
    return make_codes(codes.mean[:, order] * scale + shift)


# ----------------------------------------------------------------------------- BetaVAE score

SMALL_BETA = {"batch_size": 16, "num_train": 300, "num_eval": 200}


def test_beta_vae_pairs_share_their_fixed_factor():
    features, labels = _sample_pair_features(identity_codes(), np.random.default_rng(0), batch_size=8, num_points=50)
    assert features.shape == (50, 3) and set(labels) <= {0, 1, 2}
    # With codes equal to the factors, the coordinate of the shared factor is exactly 0, the others are not.
    np.testing.assert_array_equal(features[np.arange(50), labels], 0.0)
    assert np.all(np.argmin(features, axis=1) == labels)


def test_beta_vae_identity_codes_score_one():
    scores = compute_beta_vae_score(identity_codes(), np.random.default_rng(0), **SMALL_BETA)
    assert scores["train_accuracy"] >= 0.99 and scores["eval_accuracy"] >= 0.99


@pytest.mark.parametrize("codes", [constant_codes(), noise_codes()], ids=["constant", "noise"])
def test_beta_vae_uninformative_codes_score_chance(codes):
    scores = compute_beta_vae_score(codes, np.random.default_rng(0), **SMALL_BETA)
    assert scores["eval_accuracy"] < CHANCE + 0.12


def test_beta_vae_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_train"):
        compute_beta_vae_score(identity_codes(), np.random.default_rng(0), num_train=0)


# ----------------------------------------------------------------------------- FactorVAE score

SMALL_FACTOR = {"batch_size": 16, "num_train": 300, "num_eval": 200, "num_variance_estimate": 500}


def test_factor_vae_identity_codes_score_one():
    scores = compute_factor_vae_score(identity_codes(), np.random.default_rng(0), **SMALL_FACTOR)
    assert scores == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 3.0}


def test_factor_vae_constant_codes_have_no_active_dims():
    scores = compute_factor_vae_score(constant_codes(), np.random.default_rng(0), **SMALL_FACTOR)
    assert scores == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}


def test_factor_vae_drops_collapsed_latents():
    collapsed = 0.01 * np.random.default_rng(0).normal(size=(len(GRID), 1))  # std 0.01 < 0.05
    codes = make_codes(np.concatenate([GRID, collapsed], axis=1))
    scores = compute_factor_vae_score(codes, np.random.default_rng(0), **SMALL_FACTOR)
    assert scores == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 3.0}


def test_factor_vae_noise_codes_score_chance():
    scores = compute_factor_vae_score(noise_codes(), np.random.default_rng(0), **SMALL_FACTOR)
    assert scores["eval_accuracy"] < CHANCE + 0.12


def test_factor_vae_ignores_permutation_and_positive_rescaling():
    reference = compute_factor_vae_score(mixed_codes(), np.random.default_rng(3), **SMALL_FACTOR)
    assert 0.4 < reference["eval_accuracy"] < 1.0  # neither trivial nor chance: the check below means something
    moved = transformed(mixed_codes(), [2, 0, 3, 1], np.array([4.0, 0.5, 2.0, 8.0]), shift=-3.0)
    assert compute_factor_vae_score(moved, np.random.default_rng(3), **SMALL_FACTOR) == reference


def test_factor_vae_arithmetic_by_hand():
    batches = np.array([[[0.0, 5.0, 1.0], [0.0, -5.0, 2.0], [0.1, 0.0, 3.0]]])  # one batch of 3 codes
    variances = np.var(batches[0], axis=0, ddof=1)  # ~0.0033, 25, 1
    global_variances = np.array([1e-4, 1.0, 1.0])  # latent 0's ratio ~33 is the largest; latent 2's is smallest
    assert _least_varying_latent(batches, global_variances, np.array([True, True, True]))[0] == 2
    assert variances[0] / global_variances[0] > variances[1] / global_variances[1] > variances[2]
    # Leaving latent 2 out, latent 1 wins: the index is among the active latents, as the vote matrix expects.
    assert _least_varying_latent(batches, global_variances, np.array([True, True, False]))[0] == 1
    train_votes = np.array([[5, 1], [2, 7]])  # latent 0 -> factor 0, latent 1 -> factor 1
    eval_votes = np.array([[1, 1], [0, 3]])
    assert _factor_vae_score(train_votes, eval_votes) == {"train_accuracy": 12 / 15, "eval_accuracy": 4 / 5}


# ----------------------------------------------------------------------------- MIG (disentanglement_lib)


def _brute_force_mig(codes: np.ndarray, factors: np.ndarray, num_bins: int) -> float:
    """MIG written from the definition with counters: equal-width bins, plug-in MI and entropy in nats."""

    def bins(column):
        low, high = min(column), max(column)
        return [min(int((value - low) / (high - low) * num_bins), num_bins - 1) for value in column]

    def information(a, b):
        n, joint, count_a, count_b = len(a), Counter(zip(a, b)), Counter(a), Counter(b)
        return sum(c / n * math.log((c / n) / (count_a[x] / n * count_b[y] / n)) for (x, y), c in joint.items())

    binned = [bins(list(codes[:, j])) for j in range(codes.shape[1])]
    gaps = []
    for k in range(factors.shape[1]):
        factor = list(factors[:, k])
        ranked = sorted((information(b, factor) for b in binned), reverse=True)
        gaps.append((ranked[0] - ranked[1]) / information(factor, factor))
    return sum(gaps) / len(gaps)


def test_mig_matches_brute_force_on_a_hand_made_example():
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1], [0, 0], [1, 1], [2, 1], [2, 0]])
    codes = np.array(
        [
            [0.05, 3.0, 0.3],
            [0.12, 2.1, 0.9],
            [0.48, 2.9, 0.1],
            [0.55, 1.1, 0.7],
            [0.93, 2.6, 0.2],
            [0.98, 1.2, 0.4],
            [0.02, 2.7, 0.8],
            [0.51, 1.3, 0.6],
            [0.97, 1.4, 0.35],
            [0.91, 2.8, 0.55],
        ]
    )
    for num_bins in (2, 3, 5):
        assert _mig(_histogram_discretize(codes, num_bins), factors) == pytest.approx(
            _brute_force_mig(codes, factors, num_bins), abs=1e-12
        )


def test_mig_identity_codes_score_one():
    assert compute_mig(identity_codes(), np.random.default_rng(0), num_train=2000)["mig"] > 0.97


def test_mig_duplicated_factor_has_no_gap():
    rng = np.random.default_rng(0)
    one_copied = compute_mig(make_codes(GRID[:, [0, 0, 1, 2]]), rng, num_train=2000)["mig"]
    assert one_copied == pytest.approx(2 / 3, abs=0.02)  # factor 0's gap is 0, the other two ~1
    all_copied = compute_mig(make_codes(GRID[:, [0, 0, 1, 1, 2, 2]]), rng, num_train=2000)["mig"]
    assert all_copied == pytest.approx(0.0, abs=1e-12)


def test_mig_uninformative_codes_score_zero():
    assert compute_mig(constant_codes(), np.random.default_rng(0), num_train=2000)["mig"] == 0.0
    # Random codes are still a (random) function of the 120 grid points, so each latent carries a little
    # information about every factor; what must vanish is the gap between latents.
    assert compute_mig(noise_codes(), np.random.default_rng(0), num_train=2000)["mig"] < 0.1


def test_mig_ignores_permutation_and_affine_rescaling():
    reference = compute_mig(mixed_codes(), np.random.default_rng(5), num_train=2000)["mig"]
    assert 0.05 < reference < 0.95
    moved = transformed(mixed_codes(), [3, 1, 0, 2], np.array([2.0, 0.5, 4.0, 1.5]), shift=7.0)
    assert compute_mig(moved, np.random.default_rng(5), num_train=2000)["mig"] == pytest.approx(reference, abs=1e-3)


def test_mig_rejects_a_single_latent():
    with pytest.raises(ValueError, match="at least 2"):
        compute_mig(make_codes(GRID[:, :1]), np.random.default_rng(0), num_train=100)


# ----------------------------------------------------------------------------- sampled MIG (Chen et al.)

SMALL_SAMPLED = {"num_samples": 1000, "num_components": 200}
NARROW = math.log(0.05**2)  # posterior std 0.05, small against the unit spacing of the factor values


def test_sampled_mig_needs_logvar():
    with pytest.raises(ValueError, match="logvar"):
        compute_sampled_mig(identity_codes(), np.random.default_rng(0))


def test_log_mixture_density_matches_brute_force():
    rng = np.random.default_rng(0)
    points, means, logvars = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) - 1
    expected = [
        [
            math.log(
                sum(
                    math.exp(-((points[s, j] - means[m, j]) ** 2) / (2 * math.exp(logvars[m, j])))
                    / math.sqrt(2 * math.pi * math.exp(logvars[m, j]))
                    for m in range(5)
                )
                / 5
            )
            for j in range(3)
        ]
        for s in range(7)
    ]
    np.testing.assert_allclose(_log_mixture_density(points, means, logvars), expected, atol=1e-5)


def test_sampled_mig_arithmetic_by_hand():
    information = np.array([[1.0, 0.2, 0.5], [-0.1, 0.0, 0.3]])  # a negative estimate counts as 0
    assert _sampled_mig(information, np.array([2.0, 1.0])) == pytest.approx(((0.5 - 0.25) + 0.3) / 2)


def test_sampled_mig_identity_codes_score_one():
    codes = make_codes(GRID, np.full(GRID.shape, NARROW))
    assert compute_sampled_mig(codes, np.random.default_rng(0), **SMALL_SAMPLED)["sampled_mig"] > 0.9


def test_sampled_mig_uninformative_and_duplicated_codes_score_zero():
    constant = make_codes(np.zeros((len(GRID), 3)), np.zeros((len(GRID), 3)))
    assert compute_sampled_mig(constant, np.random.default_rng(0), **SMALL_SAMPLED)["sampled_mig"] < 0.03
    copied = GRID[:, [0, 0, 1, 1, 2, 2]]
    duplicated = make_codes(copied, np.full(copied.shape, NARROW))
    assert compute_sampled_mig(duplicated, np.random.default_rng(0), **SMALL_SAMPLED)["sampled_mig"] < 0.05


def test_sampled_mig_of_a_fingerprint_latent_stays_within_one_with_few_components():
    # Latent 0 names its grid point (narrow posteriors far apart), so it holds all of every factor's
    # entropy and the gap is exactly 1. With fewer components than grid points, an estimate that
    # must find a sample's own x among random components found it far more often within a slice than
    # in the whole grid, and scored 34 (200 components) to 1000 (20) here.
    mean = np.stack([np.arange(len(GRID), dtype=float), np.zeros(len(GRID))], axis=1)
    codes = make_codes(mean, np.full(mean.shape, NARROW))
    for num_components in (1, 20, 200):
        score = compute_sampled_mig(codes, np.random.default_rng(0), num_samples=1000, num_components=num_components)[
            "sampled_mig"
        ]
        assert score == pytest.approx(1.0, abs=0.02)


def test_log_mixture_density_leaves_out_each_samples_own_components():
    rng = np.random.default_rng(1)
    points, means, logvars = rng.normal(size=(4, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 2)) - 1
    sample_ids, component_ids = np.array([0, 1, 2, 9]), np.array([0, 1, 1])
    got = _log_mixture_density(points, means, logvars, exclude=(sample_ids, component_ids))
    for s, kept in enumerate([[1, 2], [0], [0, 1, 2], [0, 1, 2]]):
        np.testing.assert_allclose(
            got[s], _log_mixture_density(points[s : s + 1], means[kept], logvars[kept])[0], atol=1e-5
        )
    alone = _log_mixture_density(points[:1], means[:1], logvars[:1], exclude=(np.array([0]), np.array([0])))
    assert np.all(alone == -np.inf)


def test_sampled_mig_scores_only_the_chosen_factors():
    # Factor 0 is not encoded at all: over all factors the gap is ~2/3, without it ~1.
    mean = np.concatenate([GRID[:, 1:], np.zeros((len(GRID), 1))], axis=1)
    codes = make_codes(mean, np.full(mean.shape, NARROW))
    everything = compute_sampled_mig(codes, np.random.default_rng(0), **SMALL_SAMPLED)["sampled_mig"]
    encoded = compute_sampled_mig(codes, np.random.default_rng(0), factor_names=["size", "position"], **SMALL_SAMPLED)[
        "sampled_mig"
    ]
    assert everything == pytest.approx(2 / 3, abs=0.07) and encoded > 0.9
    with pytest.raises(ValueError, match="factor_names"):
        compute_sampled_mig(codes, np.random.default_rng(0), factor_names=["shape"])


# ----------------------------------------------------------------------------- Gaussian total correlation


def test_gaussian_total_correlation_closed_forms():
    rho = 0.6
    correlated = np.array([[1.0, rho], [rho, 1.0]])
    assert _gaussian_total_correlation(correlated) == pytest.approx(-0.5 * math.log(1 - rho**2))
    rng = np.random.default_rng(0)
    root = rng.normal(size=(4, 4))
    covariance = root @ root.T + 0.1 * np.eye(4)
    expected = 0.5 * (np.sum(np.log(np.diag(covariance))) - np.sum(np.log(np.linalg.eigvalsh(covariance))))
    assert _gaussian_total_correlation(covariance) == pytest.approx(expected, rel=1e-10)
    assert _gaussian_total_correlation(np.diag([1.0, 4.0, 9.0])) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_total_correlation_of_codes():
    rng = np.random.default_rng(0)
    independent = compute_gaussian_total_correlation(identity_codes(), rng, num_train=5000)
    assert independent["gaussian_total_correlation"] < 0.01
    assert compute_gaussian_total_correlation(constant_codes(), rng, num_train=500)["gaussian_total_correlation"] == 0.0
    duplicated = compute_gaussian_total_correlation(make_codes(GRID[:, [0, 0, 1]]), rng, num_train=500)
    assert duplicated["gaussian_total_correlation"] > 10  # infinite in exact arithmetic; rounding leaves ~18 nats
    # Linear mixing of independent uniform factors: the population covariance is known in closed form.
    mixing = np.array([[1.0, 0.5], [0.0, 1.0], [0.3, -0.4]])
    factor_variances = np.diag([(s**2 - 1) / 12 for s in SIZES])
    expected = _gaussian_total_correlation(mixing.T @ factor_variances @ mixing)
    measured = compute_gaussian_total_correlation(make_codes(GRID @ mixing), rng, num_train=20000)
    assert measured["gaussian_total_correlation"] == pytest.approx(expected, rel=0.05)


def test_gaussian_total_correlation_ignores_permutation_and_rescaling():
    reference = compute_gaussian_total_correlation(mixed_codes(), np.random.default_rng(2), num_train=2000)
    moved = transformed(mixed_codes(), [1, 3, 0, 2], np.array([3.0, -0.5, 2.0, 0.25]), shift=1.0)
    measured = compute_gaussian_total_correlation(moved, np.random.default_rng(2), num_train=2000)
    assert measured["gaussian_total_correlation"] == pytest.approx(reference["gaussian_total_correlation"], rel=1e-5)


# ----------------------------------------------------------------------------- UDR


def test_udr_identical_models_score_one_and_a_random_model_ranks_lower():
    rng = np.random.default_rng(0)
    grid = GRID.astype(float)
    reparametrised = np.exp(grid[:, [2, 0, 1]]) * np.array([1.0, -3.0, 0.5])  # permuted, monotone, one sign flip
    scores = compute_udr([grid, grid.copy(), reparametrised], rng, num_samples=1000)
    assert scores == pytest.approx({"udr_0": 1.0, "udr_1": 1.0, "udr_2": 1.0}, abs=1e-9)

    # A model's UDR is the median over the others: three agreeing seeds outvote one random model.
    random_model = rng.normal(size=grid.shape)
    scores = compute_udr(
        [grid, reparametrised, grid[:, [1, 0, 2]] ** 3, random_model],
        np.random.default_rng(1),
        names=["a", "b", "c", "random"],
    )
    assert scores["udr_a"] == scores["udr_b"] == scores["udr_c"] == pytest.approx(1.0, abs=1e-9)
    assert scores["udr_random"] < 0.6


def test_udr_lasso_variant_ranks_the_same_way():
    rng = np.random.default_rng(0)
    grid = GRID.astype(float)
    models = [grid, grid[:, [1, 2, 0]] * 2.0, grid[:, [2, 1, 0]] - 1.0, rng.normal(size=grid.shape)]
    scores = compute_udr(models, rng, correlation="lasso")
    # Uncorrelated latents, exact linear maps: every Lasso coefficient is 1 shrunk by alpha, and the
    # relative strength of 0.9 x a permutation is 0.9 (disentanglement_lib's numbers, too).
    assert [scores[f"udr_{i}"] for i in range(3)] == pytest.approx([0.9, 0.9, 0.9], abs=1e-6)
    assert scores["udr_3"] < 0.6


def test_udr_leaves_uninformative_latents_out():
    rng = np.random.default_rng(0)
    grid = GRID.astype(float)
    padded = np.concatenate([grid, rng.normal(size=(len(grid), 2))], axis=1)  # two latents at the prior
    kl = [np.ones(3), np.array([1.0, 1.0, 1.0, 0.001, 0.0])]
    assert compute_udr([grid, padded], rng, kl_per_dim=kl)["udr_1"] == pytest.approx(1.0, abs=1e-9)
    assert compute_udr([grid, padded], rng)["udr_1"] < 0.95


def test_mean_kl_per_latent_closed_form():
    mean = np.array([[0.0, 1.0], [0.0, -1.0]])
    logvar = np.array([[0.0, math.log(2.0)], [0.0, math.log(2.0)]])
    np.testing.assert_allclose(mean_kl_per_latent(mean, logvar), [0.0, 0.5 * (1 + 2 - math.log(2) - 1)])


def test_relative_strength_by_hand():
    assert _relative_strength(np.eye(3)[[2, 0, 1]]) == pytest.approx(1.0)
    assert _relative_strength(np.ones((4, 4))) == pytest.approx(0.25)
    assert _relative_strength(np.zeros((0, 3))) == 0.0


def test_udr_rejects_bad_input():
    grid = GRID.astype(float)
    with pytest.raises(ValueError, match="at least 2"):
        compute_udr([grid], np.random.default_rng(0))
    with pytest.raises(ValueError, match="same N"):
        compute_udr([grid, grid[:10]], np.random.default_rng(0))
    with pytest.raises(ValueError, match="correlation"):
        compute_udr([grid, grid], np.random.default_rng(0), correlation="pearson")
