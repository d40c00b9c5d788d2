"""Models: shapes, determinism, and the ODE-Net's solver, weight sharing and ResNet twin."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fedsim.errors import ScenarioError
from fedsim.models import MODELS, ODENet, ResNet, build_model, describe_models, odeint_fixed
from fedsim.models.layers import group_count
from fedsim.models.odenet import weighted_layers

SMALL = {"odenet": {"width": 4, "blocks": 2}, "resnet": {"width": 4, "blocks": 2}}

FORWARD_CASES = [
    ("mlp", (32,)),
    ("mlp", (1, 28, 28)),
    ("cnn", (1, 28, 28)),
    ("cnn", (3, 32, 32)),
    ("cnn", (1, 8, 8)),
    ("resnet18", (1, 8, 8)),
    ("resnet18", (3, 32, 32)),
    ("odenet", (1, 28, 28)),
    ("odenet", (3, 32, 32)),
    ("odenet", (1, 8, 8)),
    ("resnet", (3, 32, 32)),
    ("resnet", (1, 8, 8)),
]


@pytest.mark.parametrize(("name", "shape"), FORWARD_CASES)
def test_forward_gives_batch_by_classes(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 7, **SMALL.get(name, {}))
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18", "odenet", "resnet"])
def test_models_are_deterministic_given_the_torch_seed(name):
    def state(seed):
        torch.manual_seed(seed)
        return build_model(name, (1, 8, 8), 10, **SMALL.get(name, {})).state_dict()

    a, b, c = state(3), state(3), state(4)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_cnn_matches_fedavg_parameter_count_on_mnist():
    model = build_model("cnn", (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 1_663_370  # McMahan et al. 2017


def test_mlp_hidden_sizes_and_resnet18_stem():
    mlp = build_model("mlp", (1, 8, 8), 10, hidden=[16, 8])
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [16, 8, 10]
    rn = build_model("resnet18", (3, 32, 32), 10)
    assert rn.conv1.kernel_size == (3, 3) and rn.conv1.stride == (1, 1)
    assert isinstance(rn.maxpool, nn.Identity) and rn.fc.out_features == 10


def test_build_model_errors_name_the_setting():
    with pytest.raises(ScenarioError, match="model.name"):
        build_model("vgg", (1, 8, 8), 10)
    with pytest.raises(ScenarioError, match="model.args.depth"):
        build_model("odenet", (1, 8, 8), 10, depth=3)
    with pytest.raises(ScenarioError, match="image inputs"):
        build_model("cnn", (32,), 10)
    with pytest.raises(ScenarioError, match="solver"):
        build_model("odenet", (1, 8, 8), 10, solver="rk5")


def test_registry_lists_every_model():
    assert [n for n, _ in describe_models()] == list(MODELS)
    assert set(MODELS) == {"mlp", "cnn", "resnet18", "odenet", "resnet"}


# --- the fixed-step solver -------------------------------------------------------------


def test_rk4_solves_linear_growth_to_1e6():
    class Growth(nn.Module):
        def __init__(self, a):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))

        def forward(self, z):
            return self.a * z

    z0 = torch.ones((), dtype=torch.float64)
    z1 = odeint_fixed(Growth(1.5), z0, t1=1.0, steps=100, method="rk4")
    assert abs(z1.item() - math.exp(1.5)) < 1e-6

    def error(steps, method):
        return abs(odeint_fixed(lambda z: 1.5 * z, 1.0, 1.0, steps, method) - math.exp(1.5))

    assert 14 < error(10, "rk4") / error(20, "rk4") < 18  # fourth order
    assert 1.7 < error(100, "euler") / error(200, "euler") < 2.1  # first order


def test_rk4_is_the_classic_rule_not_the_three_eighths_rule():
    # A nonlinear field: on z' = a z every four-stage fourth-order rule agrees.
    def f(z):
        return z * z

    z, h = 1.0, 0.5
    k1 = f(z)
    k2 = f(z + h / 2 * k1)
    k3 = f(z + h / 2 * k2)
    k4 = f(z + h * k3)
    classic = z + h * (k1 / 6 + k2 / 3 + k3 / 3 + k4 / 6)
    j2 = f(z + h * k1 / 3)
    j3 = f(z + h * (-k1 / 3 + j2))
    j4 = f(z + h * (k1 - j2 + j3))
    three_eighths = z + h * (k1 + 3 * j2 + 3 * j3 + j4) / 8
    assert odeint_fixed(f, z, t1=h, steps=1, method="rk4") == pytest.approx(classic, abs=1e-12)
    assert abs(classic - three_eighths) > 1e-4


def test_per_step_fields_and_bad_arguments():
    fields = [lambda z: 1.0, lambda z: 2.0, lambda z: 3.0]
    assert odeint_fixed(fields, 0.0, t1=3.0, steps=3) == 6.0
    with pytest.raises(ValueError, match="solver"):
        odeint_fixed(lambda z: z, 1.0, method="midpoint")
    with pytest.raises(ValueError):
        odeint_fixed(fields, 0.0, steps=2)


# --- ODE-Net -----------------------------------------------------------------------------


def _shapes(model):
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def test_odenet_group_norm_shapes_do_not_depend_on_iterations():
    torch.manual_seed(0)
    reference = ODENet((3, 32, 32), 10, iterations=1)
    for c in (2, 4, 8):
        torch.manual_seed(0)
        model = ODENet((3, 32, 32), 10, iterations=c)
        assert _shapes(model) == _shapes(reference)
        # Same seed, same weights: a C-trained model's state loads into any other C.
        reference.load_state_dict(model.state_dict())


def test_set_iterations_changes_depth_not_parameters():
    torch.manual_seed(0)
    model = ODENet((1, 8, 8), 10, blocks=2, width=4)
    x = torch.randn(2, 1, 8, 8)
    before, shapes = model(x), _shapes(model)
    model.set_iterations(5)
    assert model.iterations == 5 and _shapes(model) == shapes
    assert not torch.allclose(model(x), before)
    assert set(model.parameter_reuse().values()) == {1, 5}


def test_odenet_batch_norm_is_per_iteration():
    small = ODENet((1, 8, 8), 10, iterations=2, norm="batch", width=4)
    big = ODENet((1, 8, 8), 10, iterations=4, norm="batch", width=4)
    assert len(small.body[0].f.norm1) == 2 and len(big.body[0].f.norm1) == 4
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    assert not any("norm" in n for n in big.shared_parameter_names())
    big.set_iterations(3)
    big(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="per-iteration BatchNorm"):
        small.set_iterations(3)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_euler_block_is_the_hand_written_loop(norm):
    torch.manual_seed(0)
    model = ODENet((1, 8, 8), 10, iterations=4, norm=norm, width=4).eval()
    block = model.body[0]
    z0 = torch.randn(2, 4, 8, 8)
    z = z0
    with torch.no_grad():
        for i in range(4):
            z = z + (1 / 4) * block.f(z, index=i if norm == "batch" else 0)
        assert torch.equal(block(z0), z)


def test_rk4_block_runs_four_field_evaluations_per_step():
    torch.manual_seed(0)
    model = ODENet((1, 8, 8), 10, iterations=3, solver="rk4", width=4)
    calls = []
    model.body[0].f.register_forward_hook(lambda *_: calls.append(1))
    model(torch.randn(1, 1, 8, 8))
    assert len(calls) == 12


def test_shared_parameters_are_the_ode_block_weights():
    model = ODENet((3, 32, 32), 10, blocks=4)
    shared = model.shared_parameter_names()
    params = dict(model.named_parameters())
    assert set(shared) <= set(params) and len(shared) == 3 * 6  # 3 stages x (2 convs, 2 norms)
    in_blocks = sum(p.numel() for n, p in params.items() if n.startswith("body."))
    assert sum(params[n].numel() for n in shared) == in_blocks
    assert all(model.parameter_reuse()[n] == 4 for n in shared)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_resnet_counterpart_has_n_times_the_block_parameters(n):
    ode, res = ODENet((3, 32, 32), 10, blocks=n), ResNet((3, 32, 32), 10, blocks=n)

    def count(module):
        return sum(p.numel() for p in module.parameters())

    for s in range(3):
        assert count(res.body[s]) == n * count(ode.body[s])
    for part in ("stem", "down", "head"):
        assert _shapes(getattr(ode, part)) == _shapes(getattr(res, part))


def test_odenet_with_unit_steps_is_a_weight_tied_resnet():
    torch.manual_seed(0)
    ode = ODENet((1, 8, 8), 10, blocks=3, step=1.0, width=4, stages=2)
    res = ResNet((1, 8, 8), 10, blocks=3, width=4, stages=2)
    tied = {}
    for key in res.state_dict():
        parts = key.split(".")
        if parts[0] == "body":  # body.<stage>.<block>.f.* <- body.<stage>.f.*
            del parts[2]
        tied[key] = ode.state_dict()[".".join(parts)]
    res.load_state_dict(tied)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(res(x), ode(x), rtol=1e-5, atol=1e-6)


def test_gradients_reach_the_shared_weights():
    model = ODENet((1, 8, 8), 10, blocks=2, width=4, solver="rk4")
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# --- norm groups and the CIFAR ResNet layout ------------------------------------------------


@pytest.mark.parametrize("channels", [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 512])
def test_group_norm_keeps_two_channels_per_group(channels):
    groups = group_count(channels)
    assert channels % groups == 0 and channels // groups >= 2 and groups <= 32
    # the most such groups: one more group would break a rule
    assert all(channels % g or channels // g < 2 for g in range(groups + 1, 33))


def test_narrow_odenet_is_not_instance_norm():
    """min(32, C) groups at width 8 put one channel in each group; every GroupNorm of a
    width-8 ODE-Net must pool at least 2 channels."""
    model = ODENet((1, 28, 28), 10, blocks=2, width=8)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_channels // m.num_groups >= 2 for m in norms)
    assert group_count(8) == 4 and group_count(64) == 32


@pytest.mark.parametrize(("n", "depth"), [(1, 8), (3, 20), (5, 32), (9, 56), (18, 110)])
def test_cifar_layout_is_he_et_al_6n_plus_2(n, depth):
    res = ResNet((3, 32, 32), 10, blocks=n, layout="cifar")
    assert weighted_layers(res) == depth == 6 * n + 2
    assert [len(b) for b in res.body] == [n, n - 1, n - 1]  # the downsampler is block 1
    if n == 1:  # stages 2 and 3 are their downsampler alone
        assert res(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    unrolled = ResNet((3, 32, 32), 10, blocks=n)
    ode = ODENet((3, 32, 32), 10, blocks=n)
    assert weighted_layers(unrolled) == weighted_layers(ode) == 6 * n + 6


def test_resnet110_has_he_et_al_parameter_count_and_odenet_saves_about_90_percent():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    res = count(ResNet((3, 32, 32), 10, blocks=18, layout="cifar"))
    ode = count(ODENet((3, 32, 32), 10, blocks=18))
    assert 1.70e6 < res < 1.75e6  # He et al. 2016, Table 6: 1.7M
    assert 0.89 < 1 - ode / res < 0.91


def test_resnet_layout_is_checked():
    with pytest.raises(ScenarioError, match="layout"):
        build_model("resnet", (1, 8, 8), 10, layout="6n+2")
