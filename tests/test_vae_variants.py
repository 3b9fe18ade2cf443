"""The VAE-regulariser models of the zoo: annealed VAE, beta-TCVAE (MWS and MSS), DIP-VAE I and II.

Every loss term is checked against an independent computation: closed forms in float64, explicit
loops over the batch, brute-force sums over a tiny data set or Monte-Carlo samples.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from hydra.utils import get_class, instantiate

from conftest import compose_cfg
from conftest import square_images as images
from vision_models import VisionModel
from vision_models.annealed_vae import AnnealedVAE, capacity
from vision_models.beta_tcvae import (
    BetaTCVAE,
    _log_aggregate_posterior,
    kl_decomposition,
    log_importance_weights,
)
from vision_models.dip_vae import DIPVAE, covariance_penalties, dip_covariance

torch.set_num_threads(1)  # small convs gain little from more; other suites share the 2 cores

SHAPE = (3, 64, 64)
LATENT = 4

VARIANTS = {
    "annealed_vae": lambda **kw: AnnealedVAE(SHAPE, LATENT, **{"iteration_threshold": 100, **kw}),
    "beta_tcvae_mws": lambda **kw: BetaTCVAE(SHAPE, LATENT, **{"dataset_size": 1000, "estimator": "mws", **kw}),
    "beta_tcvae_mss": lambda **kw: BetaTCVAE(SHAPE, LATENT, **{"dataset_size": 1000, "estimator": "mss", **kw}),
    "dip_vae_i": lambda **kw: DIPVAE(SHAPE, LATENT, **{"dip_type": "i", **kw}),
    "dip_vae_ii": lambda **kw: DIPVAE(SHAPE, LATENT, **{"dip_type": "ii", **kw}),
}
# The settings under which each model's regulariser contributes nothing (its loss becomes reconstruction [+ KL]).
REGULARISER_OFF = {
    "annealed_vae": {"gamma": 0.0},
    "beta_tcvae_mws": {"beta": 1.0},
    "beta_tcvae_mss": {"beta": 1.0},
    "dip_vae_i": {"lambda_od": 0.0, "lambda_d": 0.0},
    "dip_vae_ii": {"lambda_od": 0.0, "lambda_d": 0.0},
}
_TC_TERMS = {"reconstruction", "kl", "mutual_information", "total_correlation", "dimension_wise_kl", "total"}
_DIP_TERMS = {"reconstruction", "kl", "covariance_off_diagonal", "covariance_diagonal", "total"}
TERMS = {
    "annealed_vae": {"reconstruction", "kl", "capacity", "capacity_gap", "total"},
    "beta_tcvae_mws": _TC_TERMS,
    "beta_tcvae_mss": _TC_TERMS,
    "dip_vae_i": _DIP_TERMS,
    "dip_vae_ii": _DIP_TERMS,
}


def make(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return VARIANTS[name](**kwargs)


def widen_codes(model, scale=300.0):
    """Scale the encoder's mean head (and drop its bias) so that codes differ across a batch.

    At initialisation every image gets nearly the same code, which would leave covariances and the
    total correlation too small for a wrong normalisation or weight to show in a comparison.
    """
    head = model.encoder[-1]  # Linear to (mean, logvar)
    with torch.no_grad():
        head.weight[: model.latent_dim].mul_(scale)
        head.bias[: model.latent_dim].zero_()
    return model


def reference_pass(model, x, seed):
    """(mean, logvar, z, logits) in float64, with the noise `model.loss` draws after torch.manual_seed(seed).

    loss() encodes (no randomness), then draws one standard normal of the mean's shape.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        mean, logvar = model.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        logits = model.decode(z)
    return mean.double(), logvar.double(), z.double(), logits.double()


def loss_with_seed(model, x, step, seed):
    torch.manual_seed(seed)
    return model.loss(x, step)


def manual_bernoulli_nll(logits, x):
    p = 1 / (1 + torch.exp(-logits))
    x = x.double()
    return -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(dim=(1, 2, 3)).mean().item()


def manual_kl(mean, logvar):
    variance = torch.exp(logvar)
    return (0.5 * (mean**2 + variance - 1 - logvar)).sum(1).mean().item()


def normal_density(x, mean, variance):
    return math.exp(-0.5 * (x - mean) ** 2 / variance) / math.sqrt(2 * math.pi * variance)


def posterior_density(z, mean, logvar):
    """q(z | x) for one image: a product of univariate normals, by a loop over latents."""
    return math.prod(normal_density(float(z[d]), float(mean[d]), math.exp(float(logvar[d]))) for d in range(len(z)))


# ---------------------------------------------------------------------------------------- annealed VAE


def test_capacity_schedule():
    # C(t) = c_max * t / T, then held at c_max
    for step, expected in [(0, 0.0), (250, 6.25), (500, 12.5), (999, 24.975), (1000, 25.0), (5000, 25.0)]:
        assert capacity(step, 25.0, 1000) == pytest.approx(expected)
    model = AnnealedVAE(SHAPE, LATENT, c_max=10.0, iteration_threshold=4)
    assert [model.capacity(s) for s in range(6)] == pytest.approx([0.0, 2.5, 5.0, 7.5, 10.0, 10.0])


def test_annealed_loss_terms_match_independent_computation():
    model = widen_codes(make("annealed_vae", gamma=1000.0, c_max=40.0, iteration_threshold=100))
    x = images(6)
    mean, logvar, _, logits = reference_pass(model, x, seed=7)
    reconstruction, kl = manual_bernoulli_nll(logits, x), manual_kl(mean, logvar)
    per_image_kl = (0.5 * (mean**2 + logvar.exp() - 1 - logvar)).sum(1)
    # At step 50, C = 20 nats lies among the images' KLs: the gap is |batch mean of KL - C|, not the mean of |KL_i - C|
    assert per_image_kl.min() < 20.0 < per_image_kl.max()
    for step in (0, 1, 50, 100, 300):  # before, inside and past the ramp
        target = 40.0 * min(1.0, step / 100)
        total, terms = loss_with_seed(model, x, step, seed=7)
        assert terms["capacity"] == pytest.approx(target)
        assert terms["reconstruction"] == pytest.approx(reconstruction, rel=1e-5)
        assert terms["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-6)
        assert terms["capacity_gap"] == pytest.approx(abs(kl - target), rel=1e-4, abs=1e-5)
        assert total.item() == pytest.approx(reconstruction + 1000.0 * abs(kl - target), rel=1e-4)


# ---------------------------------------------------------------------------------------- beta-TCVAE


def paper_weight(i, j, batch_size, dataset_size, estimator):
    """w_ij of Chen et al.: MWS 1/(N B); MSS 1/N for z_i's own image, (N - M)/(N M) for its partner i + 1 (mod B),
    1/M for the rest, M = B - 1."""
    n, m = dataset_size, batch_size - 1
    if estimator == "mws":
        return 1 / (n * batch_size)
    if i == j:
        return 1 / n
    if j == (i + 1) % batch_size:
        return (n - m) / (n * m)
    return 1 / m


@pytest.mark.parametrize("batch_size, dataset_size", [(2, 2), (2, 10), (3, 3), (5, 7), (8, 1000), (64, 737_280)])
@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_importance_weight_matrix_matches_the_paper_entry_by_entry(estimator, batch_size, dataset_size):
    weights = log_importance_weights(batch_size, dataset_size, estimator).exp()
    assert weights.shape == (batch_size, batch_size)
    for i in range(batch_size):
        for j in range(batch_size):
            assert weights[i, j].item() == pytest.approx(
                paper_weight(i, j, batch_size, dataset_size, estimator), rel=1e-12
            )
    # MSS: each row is a weighting of the N images (sums to 1, so q(z) is exact when all posteriors agree).
    # Chen et al.'s published layout fails this: its stride-B assignments leave row B - 2 with two
    # partner weights. MWS rows sum to 1/N, the bias its derivation accepts.
    expected_row_sum = 1.0 if estimator == "mss" else 1 / dataset_size
    assert torch.allclose(weights.sum(1), torch.full((batch_size,), expected_row_sum, dtype=torch.float64), rtol=1e-12)


def random_posteriors(n, dim, seed):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, dim, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(n, dim, generator=g, dtype=torch.float64) - 0.5
    return mean, logvar


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_aggregate_posterior_estimates_match_explicit_loops(estimator):
    batch, dim, dataset_size = 5, 3, 50
    mean, logvar = random_posteriors(batch, dim, seed=1)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(
        batch, dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    log_w = log_importance_weights(batch, dataset_size, estimator)
    log_qz, log_prod_qz = _log_aggregate_posterior(z, mean, logvar, log_w)
    for i in range(batch):
        w = [paper_weight(i, j, batch, dataset_size, estimator) for j in range(batch)]
        joint = sum(w[j] * posterior_density(z[i], mean[j], logvar[j]) for j in range(batch))
        marginals = [
            sum(
                w[j] * normal_density(z[i, d].item(), mean[j, d].item(), math.exp(logvar[j, d].item()))
                for j in range(batch)
            )
            for d in range(dim)
        ]
        assert log_qz[i].item() == pytest.approx(math.log(joint), rel=1e-10)
        assert log_prod_qz[i].item() == pytest.approx(sum(math.log(q) for q in marginals), rel=1e-10)


def test_mss_is_unbiased_and_mws_biased_low_against_brute_force_aggregate_posterior():
    """A data set of N = 5 posteriors, minibatches of B = 3. For each image n*, a z ~ q(z|x_n*) and each slot
    of the batch it can sit in, average the estimate of q(z) over every minibatch that completes it (ordered,
    without replacement). MSS must give q(z) = (1/N) sum_n q(z|x_n) exactly; MWS gives
    (q(z|x_n*) + (B - 1) * mean of the other q(z|x_n)) / (N B), below q(z). Also per latent (marginals)."""
    n, batch, dim = 5, 3, 2
    mean, logvar = random_posteriors(n, dim, seed=3)
    noise = torch.randn(n, dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for n_star in range(n):
        z = mean[n_star] + torch.exp(0.5 * logvar[n_star]) * noise[n_star]
        others = [k for k in range(n) if k != n_star]
        for dims in ([0, 1], [0], [1]):  # the joint, then each marginal
            q = [posterior_density(z[dims], mean[k, dims], logvar[k, dims]) for k in range(n)]
            brute_force = sum(q) / n
            mws_expectation = (q[n_star] + (batch - 1) * sum(q[k] for k in others) / len(others)) / (n * batch)
            for slot in range(batch):
                for estimator, expected in (("mss", brute_force), ("mws", mws_expectation)):
                    log_w = log_importance_weights(batch, n, estimator)
                    estimates = []
                    for rest in itertools.permutations(others, batch - 1):
                        order = [*rest[:slot], n_star, *rest[slot:]]
                        z_batch = z[dims].expand(batch, len(dims))  # only row `slot` is read
                        log_qz, _ = _log_aggregate_posterior(
                            z_batch, mean[order][:, dims], logvar[order][:, dims], log_w
                        )
                        estimates.append(log_qz[slot].exp().item())
                    assert np.mean(estimates) == pytest.approx(expected, rel=1e-10)
            assert mws_expectation < brute_force


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_kl_decomposition_adds_up_to_the_sampled_kl(estimator):
    mean, logvar = random_posteriors(6, 3, seed=5)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(
        6, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64
    )
    parts = kl_decomposition(z, mean, logvar, dataset_size=100, estimator=estimator)
    posterior = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    sampled_kl = (posterior.log_prob(z) - prior.log_prob(z)).sum(1).mean()
    assert sum(parts.values()).item() == pytest.approx(sampled_kl.item(), rel=1e-10)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_beta_tcvae_loss_terms_match_explicit_loops(estimator):
    dataset_size, beta = 1000, 6.0
    model = widen_codes(make(f"beta_tcvae_{estimator}", beta=beta))
    x = images(6)
    mean, logvar, z, logits = reference_pass(model, x, seed=11)
    batch = len(x)
    log_qz, log_prod_qz, log_qz_given_x, log_pz = [], [], [], []
    for i in range(batch):
        w = [paper_weight(i, j, batch, dataset_size, estimator) for j in range(batch)]
        log_qz.append(math.log(sum(w[j] * posterior_density(z[i], mean[j], logvar[j]) for j in range(batch))))
        log_prod_qz.append(
            sum(
                math.log(
                    sum(
                        w[j] * normal_density(z[i, d].item(), mean[j, d].item(), math.exp(logvar[j, d].item()))
                        for j in range(batch)
                    )
                )
                for d in range(LATENT)
            )
        )
        log_qz_given_x.append(math.log(posterior_density(z[i], mean[i], logvar[i])))
        log_pz.append(math.log(posterior_density(z[i], torch.zeros(LATENT), torch.zeros(LATENT))))
    expected = {
        "reconstruction": manual_bernoulli_nll(logits, x),
        "kl": manual_kl(mean, logvar),
        "mutual_information": np.mean(np.subtract(log_qz_given_x, log_qz)),
        "total_correlation": np.mean(np.subtract(log_qz, log_prod_qz)),
        "dimension_wise_kl": np.mean(np.subtract(log_prod_qz, log_pz)),
    }
    expected["total"] = expected["reconstruction"] + expected["kl"] + (beta - 1) * expected["total_correlation"]
    total, terms = loss_with_seed(model, x, 0, seed=11)
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert terms[name] == pytest.approx(value, rel=1e-4, abs=1e-3), name
    assert total.item() == pytest.approx(expected["total"], rel=1e-4)
    # The regulariser on its own (the reconstruction dwarfs it in the total): (beta - 1) * TC
    regulariser = total.item() - terms["reconstruction"] - terms["kl"]
    assert regulariser == pytest.approx((beta - 1) * expected["total_correlation"], rel=0, abs=5e-3)


# ---------------------------------------------------------------------------------------- DIP-VAE


def loop_covariance(rows):
    """Covariance of the rows (B, D), normalised by B, by explicit loops."""
    batch, dim = rows.shape
    mean = [sum(rows[b, d].item() for b in range(batch)) / batch for d in range(dim)]
    return torch.tensor(
        [
            [
                sum((rows[b, i].item() - mean[i]) * (rows[b, j].item() - mean[j]) for b in range(batch)) / batch
                for j in range(dim)
            ]
            for i in range(dim)
        ],
        dtype=torch.float64,
    )


def test_dip_covariances_match_loops_and_monte_carlo():
    mean, logvar = random_posteriors(7, 3, seed=8)
    cov_mean = loop_covariance(mean)
    assert torch.allclose(dip_covariance(mean, logvar, "i"), cov_mean, rtol=1e-12, atol=1e-12)
    expected_ii = cov_mean + torch.diag(
        torch.tensor([sum(math.exp(logvar[b, d].item()) for b in range(7)) / 7 for d in range(3)], dtype=torch.float64)
    )
    cov_z = dip_covariance(mean, logvar, "ii")
    assert torch.allclose(cov_z, expected_ii, rtol=1e-12, atol=1e-12)
    # DIP-VAE-II regularises Cov[z] for z from the mixture of the batch's posteriors: sample it
    rng = np.random.default_rng(0)
    which = rng.integers(0, 7, size=400_000)
    samples = mean.numpy()[which] + np.exp(0.5 * logvar.numpy()[which]) * rng.standard_normal((400_000, 3))
    assert np.allclose(cov_z.numpy(), np.cov(samples, rowvar=False, bias=True), atol=0.02)


def test_dip_penalties_match_loops():
    cov = torch.tensor([[1.5, 0.2, -0.3], [0.2, 0.9, 0.1], [-0.3, 0.1, 1.0]], dtype=torch.float64)
    off_diagonal, diagonal = covariance_penalties(cov)
    assert off_diagonal.item() == pytest.approx(
        sum(cov[i, j].item() ** 2 for i in range(3) for j in range(3) if i != j)
    )
    assert diagonal.item() == pytest.approx(0.5**2 + 0.1**2 + 0.0)
    assert [v.item() for v in covariance_penalties(torch.eye(4))] == [0.0, 0.0]


@pytest.mark.parametrize("dip_type, lambda_d", [("i", 100.0), ("ii", 10.0)])
def test_dip_vae_loss_terms_match_independent_computation(dip_type, lambda_d):
    model = widen_codes(make(f"dip_vae_{dip_type}", lambda_od=10.0))
    assert model.lambda_d == lambda_d  # disentanglement_lib: 10 * lambda_od for I, lambda_od for II
    x = images(6)
    mean, logvar, _, logits = reference_pass(model, x, seed=9)
    cov = loop_covariance(mean)
    if dip_type == "ii":
        cov += torch.diag(torch.exp(logvar).mean(0))
    off_diagonal = sum(cov[i, j].item() ** 2 for i in range(LATENT) for j in range(LATENT) if i != j)
    diagonal = sum((cov[i, i].item() - 1) ** 2 for i in range(LATENT))
    reconstruction, kl = manual_bernoulli_nll(logits, x), manual_kl(mean, logvar)
    total, terms = loss_with_seed(model, x, 0, seed=9)
    assert terms["reconstruction"] == pytest.approx(reconstruction, rel=1e-5)
    assert terms["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-6)
    assert terms["covariance_off_diagonal"] == pytest.approx(off_diagonal, rel=1e-3, abs=1e-7)
    assert terms["covariance_diagonal"] == pytest.approx(diagonal, rel=1e-5)
    assert total.item() == pytest.approx(reconstruction + kl + 10.0 * off_diagonal + lambda_d * diagonal, rel=1e-4)
    regulariser = total.item() - terms["reconstruction"] - terms["kl"]  # the reconstruction dwarfs it in the total
    assert regulariser == pytest.approx(10.0 * off_diagonal + lambda_d * diagonal, rel=0, abs=5e-3)


# ---------------------------------------------------------------------------------------- all of them


@pytest.mark.parametrize("name", VARIANTS)
def test_terms_are_logged_as_floats(name):
    model = make(name)
    assert isinstance(model, VisionModel)
    total, terms = model.loss(images(4), step=10)
    assert total.dim() == 0 and torch.isfinite(total)
    assert set(terms) == TERMS[name]
    assert all(isinstance(v, float) and math.isfinite(v) for v in terms.values())
    assert terms["total"] == pytest.approx(total.item())


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_encoder_and_decoder_and_the_regulariser_only_the_encoder(name):
    x = images(6)

    def gradients(**kwargs):
        model = make(name, seed=0, **kwargs)
        loss_with_seed(model, x, step=30, seed=5)[0].backward()
        return (
            {n: p.grad for n, p in model.encoder.named_parameters()},
            {n: p.grad for n, p in model.decoder.named_parameters()},
        )

    encoder, decoder = gradients()
    for grad in [*encoder.values(), *decoder.values()]:
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # Same weights and noise with the regulariser switched off: the decoder's gradient is unchanged,
    # the encoder's is not (the regulariser reads mean, log-variance and z, never the decoder).
    encoder_off, decoder_off = gradients(**REGULARISER_OFF[name])
    assert all(torch.allclose(decoder[n], decoder_off[n], rtol=1e-5, atol=1e-7) for n in decoder)
    assert any(not torch.allclose(encoder[n], encoder_off[n], rtol=1e-3, atol=1e-6) for n in encoder)


@pytest.mark.parametrize("name", VARIANTS)
def test_adam_steps_reduce_loss_on_a_fixed_batch(name):
    model = make(name)
    x = images(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = loss_with_seed(model, x, step=50, seed=123)[0].item()  # same noise for before and after
    for _ in range(5):
        loss, _ = model.loss(x, step=50)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_with_seed(model, x, step=50, seed=123)[0].item() < before


@pytest.mark.parametrize("name, cls", [("annealed_vae", AnnealedVAE), ("beta_tcvae", BetaTCVAE), ("dip_vae", DIPVAE)])
def test_configs_instantiate(name, cls):
    root = compose_cfg("see", [f"vision_model={name}", "vision_model.model.latent_dim=10"])
    cfg = root.vision_model
    assert cfg.name == name and get_class(cfg.model._target_).pretrained == ()
    assert dict(cfg.train) == {"steps": 4000, "batch_size": 64, "lr": 1e-4}
    model = instantiate(cfg.model)
    assert type(model) is cls and model.latent_dim == 10 and model.input_shape == tuple(root.env.observation_shape)
    if name == "annealed_vae":
        assert (model.gamma, model.c_max, model.iteration_threshold) == (1000.0, 25.0, cfg.train.steps)
    elif name == "beta_tcvae":
        assert (model.beta, model.estimator, model.dataset_size) == (6.0, "mws", root.see.frames)
    else:
        assert (model.dip_type, model.lambda_od, model.lambda_d) == ("i", 10.0, 100.0)


def test_config_overrides_switch_variants():
    tc = compose_cfg("see", ["vision_model=beta_tcvae", "vision_model.model.estimator=mss", "see.frames=500"])
    model = instantiate(tc.vision_model.model)
    assert (model.estimator, model.dataset_size) == ("mss", 500)
    # an env that says how many images it draws from sets N (a factor dataset's whole grid)
    tc = compose_cfg("see", ["vision_model=beta_tcvae", "env=dsprites", "++env.num_images=737280"])
    assert instantiate(tc.vision_model.model).dataset_size == 737_280
    dip = instantiate(compose_cfg("see", ["vision_model=dip_vae", "vision_model.model.dip_type=ii"]).vision_model.model)
    assert (dip.dip_type, dip.lambda_d) == ("ii", 10.0)
    annealed = compose_cfg("see", ["vision_model=annealed_vae", "experiment=quick"]).vision_model
    assert instantiate(annealed.model).iteration_threshold == annealed.train.steps == 30


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: AnnealedVAE(SHAPE, gamma=-1.0), "gamma"),
        (lambda: AnnealedVAE(SHAPE, c_max=-5.0), "c_max"),
        (lambda: AnnealedVAE(SHAPE, iteration_threshold=0), "iteration_threshold"),
        (lambda: AnnealedVAE(SHAPE).capacity(-1), "step"),
        (lambda: BetaTCVAE(SHAPE, dataset_size=1000, estimator="exact"), "estimator"),
        (lambda: BetaTCVAE(SHAPE, dataset_size=1), "dataset_size"),
        (lambda: log_importance_weights(8, 5, "mss"), "dataset_size"),
        (lambda: log_importance_weights(1, 5, "mws"), "batch_size"),
        (lambda: BetaTCVAE(SHAPE, LATENT, dataset_size=100).loss(images(1), 0), "batch_size"),
        (lambda: DIPVAE(SHAPE, dip_type="iii"), "dip_type"),
        (lambda: DIPVAE(SHAPE, lambda_od=-1.0), "lambda_od"),
        (lambda: DIPVAE(SHAPE, lambda_d=-1.0), "lambda_d"),
        (lambda: AnnealedVAE((3, 84, 84)), "input_shape"),
    ],
)
def test_bad_arguments_are_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()
