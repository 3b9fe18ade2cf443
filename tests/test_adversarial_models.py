"""Models of the zoo that own their training step: FactorVAE, InfoGAN, and the untrained random CNN.

Loss terms are checked against hand computations (torch.distributions where one exists), the two
players of each adversarial model against gradient leaks both ways, and checkpoints through the
real training loop (darla/vision_training.py) and the safetensors files the see stage writes.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate

from conftest import compose_cfg
from conftest import square_images as images
from darla.artifacts import load_state, load_weights, save_weights
from darla.vision_training import FrameBatches, train_vision
from vision_models import VisionModel
from vision_models.factor_vae import FactorVAE, permute_dims, total_correlation_estimate
from vision_models.infogan import InfoGAN, gaussian_nll
from vision_models.nets import ConvEncoder
from vision_models.random_cnn import RandomCNN

torch.set_num_threads(1)

SHAPE = (3, 64, 64)


def params(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def same(before, module):
    return all(torch.equal(before[name], p) for name, p in module.named_parameters())


def frozen_adam(module):
    """An optimiser that steps but moves nothing (lr 0): isolates the other player's update."""
    return torch.optim.Adam(module.parameters(), lr=0.0)


def make_factor_vae(seed=0, **kwargs):
    torch.manual_seed(seed)
    return FactorVAE(SHAPE, latent_dim=4, **kwargs)


def make_infogan(seed=0, **kwargs):
    torch.manual_seed(seed)
    return InfoGAN(SHAPE, **{"latent_dim": 3, "noise_dim": 5, **kwargs})


# ---------------------------------------------------------------------------------------------- FactorVAE


def test_permute_dims_keeps_each_column_and_breaks_the_rows():
    torch.manual_seed(0)
    z = torch.randn(256, 6)  # distinct values, so every entry can be traced back
    shuffled = permute_dims(z)
    assert torch.equal(shuffled.sort(0).values, z.sort(0).values)  # each column keeps its multiset
    rows = {tuple(r) for r in z.tolist()}
    assert sum(tuple(r) in rows for r in shuffled.tolist()) < 0.05 * len(z)  # the pairing is broken
    # each column has its own permutation: where each entry came from differs between columns
    origin = torch.stack([(shuffled[:, j, None] == z[None, :, j]).float().argmax(1) for j in range(6)], 1)
    assert all(not torch.equal(origin[:, 0], origin[:, j]) for j in range(1, 6))
    # and the columns of the permuted codes are near-uncorrelated where the originals were not
    correlated = torch.cat([z[:, :1], z[:, :1] + 0.1 * z[:, 1:2]], 1)
    assert torch.corrcoef(correlated.T)[0, 1] > 0.9
    assert abs(torch.corrcoef(permute_dims(correlated).T)[0, 1]) < 0.25


def test_factor_vae_terms_match_a_hand_computation():
    model = make_factor_vae(gamma=7.0)
    x = images(6)
    torch.manual_seed(11)
    total, terms = model.loss(x, step=0)

    torch.manual_seed(11)  # the same noise: reparameterisation first, then the permutation
    with torch.no_grad():
        mean, logvar = model.encoder(x).chunk(2, dim=1)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        p = torch.sigmoid(model.decoder(z).double())
        t = x.double()
        reconstruction = -(t * p.log() + (1 - t) * (1 - p).log()).sum((1, 2, 3)).mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        prob = torch.softmax(model.discriminator(z).double(), 1)
        tc = (prob[:, 0].log() - prob[:, 1].log()).mean()  # log D / (1 - D), through probabilities
        joint = torch.softmax(model.discriminator(z), 1)
        marginals = torch.softmax(model.discriminator(permute_dims(z)), 1)
        discriminator = -0.5 * (joint[:, 0].log().mean() + marginals[:, 1].log().mean())
    assert terms["reconstruction"] == pytest.approx(reconstruction.item(), rel=1e-5)
    assert terms["kl"] == pytest.approx(kl.item(), rel=1e-4)
    assert terms["tc"] == pytest.approx(tc.item(), abs=1e-5)
    assert terms["discriminator"] == pytest.approx(discriminator.item(), rel=1e-5)
    assert total.item() == pytest.approx((reconstruction + kl + 7.0 * tc).item(), rel=1e-5)
    assert terms["total"] == pytest.approx(total.item())
    assert set(terms) == {"reconstruction", "kl", "tc", "discriminator", "total"}


def test_factor_vae_loss_reaches_the_encoder_through_the_discriminator_but_not_the_discriminator():
    x = images(4)
    grads = {}
    for gamma in (0.0, 35.0):
        model = make_factor_vae(gamma=gamma)
        torch.manual_seed(3)
        model.loss(x, step=0)[0].backward()
        assert all(p.grad is None for p in model.discriminator.parameters())
        assert all(p.grad is not None for p in [*model.encoder.parameters(), *model.decoder.parameters()])
        grads[gamma] = model.encoder[0].weight.grad
    assert not torch.allclose(grads[0.0], grads[35.0])  # the TC term does train the encoder


def test_factor_vae_training_step_keeps_the_players_apart():
    model = make_factor_vae(gamma=35.0)
    x = images(8)
    vae_params = [*model.encoder.parameters(), *model.decoder.parameters()]
    disc_params = list(model.discriminator.parameters())

    # Reference gradients, each player's loss alone, on a copy at the same weights and noise.
    reference = copy.deepcopy(model)
    torch.manual_seed(5)
    vae_loss, disc_loss, _ = reference._losses(x)
    ref_vae = torch.autograd.grad(vae_loss, [*reference.encoder.parameters(), *reference.decoder.parameters()])
    ref_disc = torch.autograd.grad(disc_loss, list(reference.discriminator.parameters()))

    optimizers = model.configure_optimizers(1e-3)
    optimizers["discriminator"] = frozen_adam(model.discriminator)  # see what the VAE's update alone does
    disc_before, vae_before = params(model.discriminator), {id(p): p.detach().clone() for p in vae_params}
    torch.manual_seed(5)
    model.training_step(x, 0, optimizers)
    assert same(disc_before, model.discriminator)
    assert all(not torch.equal(vae_before[id(p)], p) for p in vae_params)
    # the VAE's gradients are its own loss's only: the discriminator's loss added nothing to them
    assert all(torch.allclose(p.grad, g, atol=1e-6, rtol=1e-4) for p, g in zip(vae_params, ref_vae))
    assert all(torch.allclose(p.grad, g, atol=1e-6, rtol=1e-4) for p, g in zip(disc_params, ref_disc))

    model = make_factor_vae(gamma=35.0)
    optimizers = model.configure_optimizers(1e-3)
    optimizers["vae"] = frozen_adam(torch.nn.ModuleList([model.encoder, model.decoder]))
    vae_before, disc_before = params(torch.nn.ModuleList([model.encoder, model.decoder])), params(model.discriminator)
    model.training_step(x, 0, optimizers)
    assert same(vae_before, torch.nn.ModuleList([model.encoder, model.decoder]))
    assert not same(disc_before, model.discriminator)


def test_factor_vae_optimisers_follow_disentanglement_lib():
    model = make_factor_vae()
    optimizers = model.configure_optimizers(3e-4)
    assert set(optimizers) == {"vae", "discriminator"}
    vae, disc = optimizers["vae"].param_groups[0], optimizers["discriminator"].param_groups[0]
    assert (vae["lr"], vae["betas"]) == (3e-4, (0.9, 0.999))
    assert (disc["lr"], disc["betas"]) == (1e-4, (0.5, 0.9))
    assert {id(p) for p in vae["params"]} | {id(p) for p in disc["params"]} == {id(p) for p in model.parameters()}
    assert not {id(p) for p in vae["params"]} & {id(p) for p in disc["params"]}
    layers = [m for m in model.discriminator if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in layers] == [1000] * 6 + [2]
    assert all(m.negative_slope == 0.2 for m in model.discriminator if isinstance(m, torch.nn.LeakyReLU))


def test_factor_vae_training_steps_reduce_the_vae_loss():
    model = make_factor_vae()
    x = images(16)
    optimizers = model.configure_optimizers(1e-3)

    def measured():
        torch.manual_seed(123)
        terms = model.loss(x, step=0)[1]
        return terms["reconstruction"] + terms["kl"]

    before = measured()
    for step in range(10):
        terms = model.training_step(x, step, optimizers)
    assert measured() < before
    assert set(terms) == {"reconstruction", "kl", "tc", "discriminator", "total"}


def test_discriminator_learns_the_total_correlation_of_correlated_codes():
    # A fresh encoder's codes are near-independent (nothing to tell apart), so train on codes that share a factor.
    model = make_factor_vae(discriminator_lr=1e-3)
    optimizer = model.configure_optimizers(1e-4)["discriminator"]

    def correlated(n):
        return torch.randn(n, 1) + 0.3 * torch.randn(n, 4)  # TC = -log det(corr) / 2 = 3.4 nats

    z = correlated(64)
    first = model.discriminator_loss(z).item()
    for _ in range(20):
        loss = model.discriminator_loss(z)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first == pytest.approx(np.log(2), abs=0.01) and loss.item() < 0.55
    held_out = correlated(512)
    with torch.no_grad():
        assert total_correlation_estimate(model.discriminator(held_out)) > 1.0
        assert total_correlation_estimate(model.discriminator(permute_dims(held_out))) < 0.0


# ------------------------------------------------------------------------------------------------ InfoGAN


def test_gaussian_nll_matches_torch_distributions():
    torch.manual_seed(0)
    value, mean, logvar = torch.randn(50, 4), torch.randn(50, 4), torch.randn(50, 4)
    expected = -torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(value).sum(1).mean()
    assert gaussian_nll(value, mean, logvar).item() == pytest.approx(expected.item(), rel=1e-5)


def test_infogan_terms_match_a_hand_computation():
    model = make_infogan(categories=3, info_weight=0.5)
    x = images(6)
    torch.manual_seed(9)
    total, terms = model.loss(x, step=0)

    torch.manual_seed(9)
    noise, category, codes = model.sample_latents(6, "cpu")
    with torch.no_grad():
        fake = torch.sigmoid(model.generator(torch.cat([noise, F.one_hot(category, 3).float(), codes], 1)))
        features = model.discriminator.trunk(torch.cat([x, fake]))
        d_real, d_fake = torch.sigmoid(model.discriminator.real_fake(features)).squeeze(1).double().chunk(2)
        q = model.discriminator.q(features[6:])
        mean, logvar, logits = q[:, :3], q[:, 3:6], q[:, 6:]
        information = (
            -torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(codes).sum(1).mean()
            - torch.distributions.Categorical(logits=logits).log_prob(category).mean()
        )
    discriminator = -(d_real.log().mean() + (1 - d_fake).log().mean())
    generator = -d_fake.log().mean()
    assert terms["discriminator"] == pytest.approx(discriminator.item(), rel=1e-5)
    assert terms["generator"] == pytest.approx(generator.item(), rel=1e-5)
    assert terms["information"] == pytest.approx(information.item(), rel=1e-5)
    assert total.item() == pytest.approx(discriminator.item() + generator.item() + 0.5 * information.item(), rel=1e-5)
    assert set(terms) == {"discriminator", "generator", "information", "total"}


def test_infogan_latents_follow_their_priors():
    model = make_infogan(categories=4, noise_dim=6)
    torch.manual_seed(0)
    noise, category, codes = model.sample_latents(20_000, "cpu")
    assert noise.shape == (20_000, 6) and codes.shape == (20_000, 3) and category.shape == (20_000,)
    for uniform in (noise, codes):
        assert uniform.min() >= -1 and uniform.max() <= 1
        assert uniform.mean().abs() < 0.02 and uniform.var().item() == pytest.approx(1 / 3, abs=0.01)
    assert torch.bincount(category, minlength=4).float().div(20_000).sub(0.25).abs().max() < 0.02


def test_infogan_players_do_not_leak_gradients():
    model = make_infogan(categories=3)
    x = images(4)
    noise, category, codes = model.sample_latents(4, "cpu")
    fake = torch.sigmoid(model.generate(noise, category, codes))
    gan, information = model.discriminator_losses(x, fake, codes, category)
    (gan + information).backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())  # trunk, D head and Q head

    model.zero_grad(set_to_none=True)
    gan, information = model.generator_losses(fake, codes, category)
    (gan + information).backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_infogan_each_optimiser_moves_only_its_player(frozen):
    model = make_infogan()
    moving = "discriminator" if frozen == "generator" else "generator"
    optimizers = model.configure_optimizers(1e-3)
    optimizers[frozen] = frozen_adam(getattr(model, frozen))
    before = {name: params(getattr(model, name)) for name in ("generator", "discriminator")}
    model.training_step(images(4), 0, optimizers)
    assert same(before[frozen], getattr(model, frozen))
    assert not same(before[moving], getattr(model, moving))


def test_infogan_optimisers():
    model = make_infogan()
    optimizers = model.configure_optimizers(1e-3)
    assert set(optimizers) == {"generator", "discriminator"}
    g, d = optimizers["generator"].param_groups[0], optimizers["discriminator"].param_groups[0]
    assert (g["lr"], g["betas"][0], d["lr"], d["betas"][0]) == (1e-3, 0.5, 2e-4, 0.5)
    q_head = {id(p) for p in model.discriminator.q.parameters()}
    assert q_head <= {id(p) for p in d["params"]}  # Q trains with the discriminator network
    assert {id(p) for p in g["params"]} == {id(p) for p in model.generator.parameters()}


def test_infogan_encode_is_q_and_decode_is_the_generator_at_zero_noise():
    model = make_infogan(categories=3).eval()
    x = images(4)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (4, model.latent_dim) == (4, 3)
    q = model.discriminator.q(model.discriminator.trunk(x))
    assert torch.equal(mean, q[:, :3]) and torch.equal(logvar, q[:, 3:6])
    assert torch.equal(model.representation(x), mean.detach())
    codes = torch.rand(4, 3) * 2 - 1
    first_class = F.one_hot(torch.zeros(4, dtype=torch.long), 3).float()
    by_hand = model.generator(torch.cat([torch.zeros(4, 5), first_class, codes], 1))
    assert torch.equal(model.decode(codes), by_hand)
    assert model.reconstruct(x).shape == x.shape and model.kl_per_dim(x).shape == (3,)


@pytest.mark.parametrize("categories", [0, 3])
@pytest.mark.parametrize(
    "frozen, falls", [(None, "information"), ("generator", "discriminator"), ("discriminator", "generator")]
)
def test_infogan_training_steps_reduce_its_losses(categories, frozen, falls):
    # Both players lower the information term together; each GAN term falls when its player trains
    # against a fixed opponent (with both moving, neither GAN term need fall).
    model = make_infogan(categories=categories, discriminator_lr=1e-3)
    x = images(16)
    optimizers = model.configure_optimizers(1e-3)
    if frozen:
        optimizers[frozen] = frozen_adam(getattr(model, frozen))

    def measured():
        torch.manual_seed(123)
        return model.loss(x, step=0)[1][falls]

    before = measured()
    for step in range(8):
        terms = model.training_step(x, step, optimizers)
    assert measured() < before
    assert set(terms) == {"discriminator", "generator", "information", "total"}


@pytest.mark.parametrize(
    "kwargs",
    [{"latent_dim": 0}, {"noise_dim": -1}, {"categories": 1}, {"info_weight": -1.0}, {"discriminator_lr": 0.0}],
)
def test_infogan_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        InfoGAN(SHAPE, **kwargs)


# --------------------------------------------------------------------------------------------- random CNN


def test_random_cnn_is_seeded_frozen_and_encoder_only():
    torch.manual_seed(0)
    model = RandomCNN(SHAPE, latent_dim=5, seed=7)
    torch.manual_seed(1)  # the global RNG must not matter
    again = RandomCNN(SHAPE, latent_dim=5, seed=7)
    other = RandomCNN(SHAPE, latent_dim=5, seed=8)
    assert same(params(model), again)
    assert not same(params(model), other)
    assert not any(p.requires_grad for p in model.parameters())
    assert model.configure_optimizers(1e-3) == {}
    before = params(model)
    assert model.training_step(images(2), 0, {}) == {"total": 0.0}
    assert same(before, model)
    x = images(4)
    code, logvar = model.encode(x)
    assert code.shape == (4, 5) and logvar is None
    assert torch.equal(model.representation(x), code)
    assert model.can_decode is False
    with pytest.raises(NotImplementedError, match="no decoder"):
        model.decode(code)


def test_random_cnn_codes_vary_with_the_image():
    # PyTorch's default initialisation shrinks the signal through the random layers; He-normal keeps it.
    x = images(256, seed=1)
    torch.manual_seed(0)
    default = ConvEncoder(3, 32)
    with torch.no_grad():
        spread = RandomCNN(SHAPE, latent_dim=32, seed=0).encode(x)[0].std(0).mean()
        default_spread = default(x).std(0).mean()
    assert spread > 0.03 and spread > 10 * default_spread


# --------------------------------------------------------------------- all three: checkpoints and configs


MODELS = {
    "factor_vae": lambda: make_factor_vae(),
    "infogan": lambda: make_infogan(categories=3),
    "random_cnn": lambda: RandomCNN(SHAPE, latent_dim=4, seed=0),
}


@pytest.mark.parametrize("name", MODELS)
def test_weights_round_trip_through_safetensors(name, tmp_path):
    model = MODELS[name]().eval()
    x = images(3)
    save_weights(tmp_path / "model.safetensors", model)
    torch.manual_seed(99)  # a differently initialised twin
    twin = load_weights(tmp_path / "model.safetensors", type(model)(**_init_kwargs(model))).eval()
    assert torch.equal(twin.representation(x), model.representation(x))
    assert set(twin.state_dict()) == set(model.state_dict())
    if name == "factor_vae":
        assert any(k.startswith("discriminator.") for k in model.state_dict())
        z = torch.randn(5, 4)
        assert torch.equal(twin.discriminator(z), model.discriminator(z))
    if name == "infogan":
        codes = torch.rand(2, 3)
        assert torch.equal(twin.decode(codes), model.decode(codes))


def _init_kwargs(model):
    if isinstance(model, FactorVAE):
        return {"input_shape": SHAPE, "latent_dim": 4}
    if isinstance(model, InfoGAN):
        return {"input_shape": SHAPE, "latent_dim": 3, "noise_dim": 5, "categories": 3}
    return {"input_shape": SHAPE, "latent_dim": 4, "seed": 1}  # another seed: the file must win


@pytest.mark.parametrize("name", MODELS)
def test_training_loop_checkpoints_every_optimiser_and_resumes(name, tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    checkpoint = tmp_path / "vision.safetensors"
    model = MODELS[name]()
    initial = params(model)
    args = {
        "batch_size": 4,
        "lr": 1e-4,
        "checkpoint": checkpoint,
        "seed": 0,
        "device": torch.device("cpu"),
        "checkpoint_every": 1,
    }
    train_vision(model, FrameBatches(frames), steps=2, **args)
    state = load_state(checkpoint)
    assert state["step"] == 2
    assert set(state["optimizers"]) == set(model.configure_optimizers(1e-4))
    assert same(initial, model) == (name == "random_cnn")

    resumed = MODELS[name]()
    train_vision(resumed, FrameBatches(frames), steps=3, **args)
    assert load_state(checkpoint)["step"] == 3
    if name == "random_cnn":
        assert same(initial, resumed)


@pytest.mark.parametrize("name", ["factor_vae", "infogan", "random_cnn"])
def test_configs_instantiate(name):
    cfg = compose_cfg("see", [f"vision_model={name}"]).vision_model
    assert cfg.name == name and get_class(cfg.model._target_).pretrained == ()
    assert {"steps", "batch_size", "lr"} <= set(cfg.train) and isinstance(cfg.train.lr, float)
    model = instantiate(cfg.model)
    assert isinstance(model, VisionModel) and model.input_shape == SHAPE
    assert model.latent_dim == {"factor_vae": 32, "infogan": 10, "random_cnn": 32}[name]


def test_random_cnn_config_follows_the_run_seed():
    encoders = [
        instantiate(compose_cfg("see", ["vision_model=random_cnn", f"seed={s}"]).vision_model.model) for s in (0, 0, 1)
    ]
    assert same(params(encoders[0]), encoders[1])
    assert not same(params(encoders[0]), encoders[2])
