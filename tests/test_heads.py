"""Heads against autograd, against an independent full-matrix reference, and under misuse."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaface_lab.heads import build_head, list_heads
from adaface_lab.margins import build_margin, margin_class

from . import formulas
from .margin_checks import assert_head_gst_matches_autograd, param_strategy, sample_params
from .reference_heads import ReferenceHead

ALL = list_heads()


def _unit(batch: int, dim: int, gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    return F.normalize(torch.randn(batch, dim, generator=gen, dtype=dtype), dim=1)


def test_registry_has_every_method_of_the_design():
    assert set(ALL) == {"softmax", "cosface", "arcface", "negative_angular", "sphereface",
                        "combined", "magface", "curricularface", "adaface"}
    with pytest.raises(ValueError, match="unknown head 'arcfce'.*arcface"):
        build_head("arcfce", 8, 4)
    with pytest.raises(ValueError, match="unknown parameter"):
        build_head("arcface", 8, 4, margin=0.5)


# ----------------------------------------------------------------------------- GST vs autograd


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(ALL), data=st.data(), seed=st.integers(0, 2**31 - 1),
       detach=st.booleans())
def test_analytic_gst_equals_autograd_through_the_head(method, data, seed, detach):
    """g = (P_y − 1)·df/dc from the margin module equals ∂L/∂c_y that autograd finds in the head,
    for every registered margin at parameters drawn from its declared ranges."""
    params = data.draw(param_strategy(method), label="params")
    assert_head_gst_matches_autograd(method, params, seed, detach)


# ----------------------------------------------------------------------------- reference


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("detach", [False, True])
def test_heads_match_the_full_matrix_reference(method, detach):
    """Logits, gradients (embeddings, kernel, norms) and buffers agree with the official-style
    formulation over several training steps."""
    gen = torch.Generator().manual_seed(zlib.crc32(method.encode()))
    params = sample_params(method)
    dim, classes, batch = 32, 50, 24
    head = build_head(method, dim, classes, detach_margin=detach, **params).double()
    kernel_ref = head.kernel.detach().clone().requires_grad_()
    ref = ReferenceHead(method, kernel_ref, **params)
    head.train()
    for _ in range(4):
        raw = torch.randn(batch, dim, generator=gen, dtype=torch.float64) * 3
        feats = raw.clone().requires_grad_()
        norms = feats.norm(dim=1, keepdim=True)
        emb = feats / norms
        labels = torch.randint(0, classes, (batch,), generator=gen)
        logits = head(emb, norms, labels)
        loss = head.loss(logits, labels)

        feats_ref = raw.clone().requires_grad_()
        norms_ref = feats_ref.norm(dim=1, keepdim=True)
        logits_ref = ref(feats_ref / norms_ref, norms_ref, labels)
        torch.testing.assert_close(logits, logits_ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(loss, ref.loss(logits_ref, labels, norms_ref), rtol=1e-6, atol=1e-6)
        if detach:
            continue  # the detached convention's gradients are checked below
        head.zero_grad()
        kernel_ref.grad = None
        loss.backward()
        ref.loss(logits_ref, labels, norms_ref).backward()
        torch.testing.assert_close(feats.grad, feats_ref.grad, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(head.kernel.grad, kernel_ref.grad, rtol=1e-5, atol=1e-8)
    if method == "adaface":
        torch.testing.assert_close(head.batch_mean, ref.batch_mean.reshape(1))
        torch.testing.assert_close(head.batch_std, ref.batch_std.reshape(1))
        assert head.diagnostics["batch_mean"][0] == head.batch_mean[0]
    if method == "curricularface":
        torch.testing.assert_close(head.t, ref.t.reshape(1))


OWN_BOUNDARY = [m for m in ALL if "boundary" in margin_class(m).param_choices()]


@pytest.mark.parametrize("method", OWN_BOUNDARY)
def test_official_boundary_matches_each_methods_own_code(method):
    """boundary="official" gives what MagFace's and CurricularFace's own repositories compute:
    logits, loss, gradients (embeddings, kernel, norms) and t, against their forward passes restated
    in tests/reference_heads.py. In 3 dimensions the cosines span [−1, 1], so every branch the
    official codes have (easy margin, c − m·sin m past π − m, the unclipped hard-negative mask) is
    taken, and the clipped boundary is shown to differ there."""
    assert method in ("magface", "curricularface")
    gen = torch.Generator().manual_seed(zlib.crc32(method.encode()))
    params = {**sample_params(method), "boundary": "official"}
    if method == "curricularface":  # its default m, so that θ > π − m is common enough
        params["m"] = build_margin(method).m
    dim, classes, batch = 3, 6, 64
    head = build_head(method, dim, classes, **params).double().train()
    clipped = build_head(method, dim, classes, **{**params, "boundary": "adaface"}).double().train()
    clipped.kernel.data.copy_(head.kernel.data)
    kernel_ref = head.kernel.detach().clone().requires_grad_()
    ref = ReferenceHead(method, kernel_ref, **params)
    official, clip = [], []  # target logits past the boundary, both ways
    for _ in range(3):
        raw = torch.randn(batch, dim, generator=gen, dtype=torch.float64) * 40
        labels = torch.randint(0, classes, (batch,), generator=gen)
        feats, feats_ref = raw.clone().requires_grad_(), raw.clone().requires_grad_()
        norms, norms_ref = feats.norm(dim=1, keepdim=True), feats_ref.norm(dim=1, keepdim=True)
        logits = head(feats / norms, norms, labels)
        logits_ref = ref(feats_ref / norms_ref, norms_ref, labels)
        torch.testing.assert_close(logits, logits_ref, rtol=1e-6, atol=1e-6)
        head.zero_grad()
        kernel_ref.grad = None
        head.loss(logits, labels).backward()
        ref.loss(logits_ref, labels, norms_ref).backward()
        torch.testing.assert_close(feats.grad, feats_ref.grad, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(head.kernel.grad, kernel_ref.grad, rtol=1e-5, atol=1e-8)
        c_y = head.diagnostics["cos_y"]
        past = c_y <= 0 if method == "magface" else c_y <= math.cos(math.pi - params["m"])
        with torch.no_grad():
            other = clipped(feats / norms, norms, labels)
        rows = torch.arange(batch)
        official.append(logits.detach()[rows, labels][past])
        clip.append(other[rows, labels][past])
    official, clip = torch.cat(official), torch.cat(clip)
    assert len(official) > 0, "the official fallback branch was never taken"
    assert (official - clip).abs().min() > 1e-3, "the AdaFace-code clip should differ there"
    if method == "curricularface":
        torch.testing.assert_close(head.t, ref.t.reshape(1))


@pytest.mark.parametrize("method", [m for m in ALL if m != "softmax"])
def test_detached_margin_gives_the_softmax_gradient_on_cosines(method):
    """insightface/CVLface convention: same logits, but ∂logit/∂c = s for every entry."""
    params = sample_params(method)
    gen = torch.Generator().manual_seed(1)
    head = build_head(method, 4, 6, detach_margin=True, **params).double()
    cos = (torch.rand(5, 6, generator=gen, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    norms = torch.full((5, 1), 30.0, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4])
    weights = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    (head.logits_from_cos(cos, norms, labels) * weights).sum().backward()
    torch.testing.assert_close(cos.grad, params["s"] * weights)


# ----------------------------------------------------------------------------- identities


def _same_kernel_heads(*specs, dim=16, classes=9):
    heads = [build_head(name, dim, classes, **p).double() for name, p in specs]
    for head in heads[1:]:
        head.kernel.data.copy_(heads[0].kernel.data)
    return heads


def _batch(dim=16, classes=9, batch=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return _unit(batch, dim, gen), torch.randint(0, classes, (batch,), generator=gen)


@pytest.mark.parametrize("z, other, extra_add", [
    (-1.0, ("arcface", {"m": 0.4}), 0.0),
    (0.0, ("cosface", {"m": 0.4}), 0.0),
    (1.0, ("negative_angular", {"m": 0.4}), 0.8),
])
def test_adaface_extremes_are_arcface_cosface_and_negative_angular(z, other, extra_add):
    """ẑ = −1 / 0 / +1 turns AdaFace into ArcFace / CosFace / negative angular + 2m."""
    c = np.linspace(-0.95, 0.95, 101)
    ada = build_margin("adaface", m=0.4)
    ref = build_margin(other[0], **other[1])
    z_hat = np.full_like(c, z)
    np.testing.assert_allclose(ada.target_logit(c, z_hat=z_hat), ref.target_logit(c) - 64 * extra_add,
                               atol=1e-9)
    np.testing.assert_allclose(ada.target_derivative(c, z_hat=z_hat), ref.target_derivative(c), atol=1e-9)


def test_adaface_head_at_saturated_norms_equals_arcface_and_negative_angular_heads():
    """Through the heads: norms far below / above μ_z saturate ẑ at −1 / +1."""
    emb, labels = _batch()
    ada, arc, neg = _same_kernel_heads(("adaface", {"h": 1.0}), ("arcface", {"m": 0.4}),
                                       ("negative_angular", {"m": 0.4}))
    ada.eval()  # read μ_z = 20, σ_z = 100 as initialised
    low = torch.full((len(labels), 1), 0.001, dtype=torch.float64)   # ẑ = h·(0.001−20)/100 → clip
    ada.batch_std.fill_(1.0)
    torch.testing.assert_close(ada(emb, low, labels), arc(emb, low, labels))
    high = torch.full((len(labels), 1), 90.0, dtype=torch.float64)
    expected = neg(emb, high, labels)
    rows = torch.arange(len(labels))
    expected[rows, labels] -= 64 * 0.8
    torch.testing.assert_close(ada(emb, high, labels), expected)


def test_h_zero_is_cosface_and_m_zero_is_softmax():
    emb, labels = _batch(seed=3)
    gen = torch.Generator().manual_seed(4)
    norms = torch.rand(len(labels), 1, generator=gen, dtype=torch.float64) * 50
    ada, cos = _same_kernel_heads(("adaface", {"h": 0.0, "m": 0.4}), ("cosface", {"m": 0.4}))
    torch.testing.assert_close(ada(emb, norms, labels), cos(emb, norms, labels), rtol=0, atol=0)
    ada0, soft = _same_kernel_heads(("adaface", {"m": 0.0}), ("softmax", {}))
    # m = 0: only the clamp of the target cosine to ±(1 − ε) can differ
    torch.testing.assert_close(ada0(emb, norms, labels), soft(emb, norms, labels), rtol=0, atol=1e-9)


def test_combined_reduces_to_arcface_and_cosface():
    c = np.linspace(-0.99, 0.99, 201)
    arc, cos = build_margin("arcface", m=0.5), build_margin("cosface", m=0.35)
    comb_arc = build_margin("combined", m1=1.0, m2=0.5, m3=0.0)
    comb_cos = build_margin("combined", m1=1.0, m2=0.0, m3=0.35)
    np.testing.assert_allclose(comb_arc.target_logit(c), arc.target_logit(c), atol=1e-12)
    np.testing.assert_allclose(comb_cos.target_logit(c), cos.target_logit(c), atol=1e-12)
    np.testing.assert_allclose(comb_arc.target_derivative(c), arc.target_derivative(c), atol=1e-12)
    emb, labels = _batch(seed=5)
    norms = torch.ones(len(labels), 1, dtype=torch.float64)
    h_arc, h_comb = _same_kernel_heads(("arcface", {"m": 0.5}), ("combined", {"m1": 1.0, "m2": 0.5, "m3": 0.0}))
    torch.testing.assert_close(h_comb(emb, norms, labels), h_arc(emb, norms, labels))


# ----------------------------------------------------------------------------- misuse


@pytest.fixture
def ada():
    return build_head("adaface", 8, 5)


def _ok_inputs(batch=4):
    gen = torch.Generator().manual_seed(0)
    return _unit(batch, 8, gen, torch.float32), torch.full((batch, 1), 20.0), torch.tensor([0, 1, 2, 3][:batch])


@pytest.mark.parametrize("mutate, error, message", [
    (lambda e, n, y: (e, n, torch.tensor([0, 1, 2, 5])), ValueError, r"labels must lie in \[0, 4\]"),
    (lambda e, n, y: (e, n, torch.tensor([0, -1, 2, 3])), ValueError, r"labels must lie in"),
    (lambda e, n, y: (e, n, y.float()), TypeError, "labels must be an integer tensor"),
    (lambda e, n, y: (e, n, y[:3]), ValueError, r"labels must have shape \(4,\)"),
    (lambda e, n, y: (e[:, :7], n, y), ValueError, r"embeddings must have shape \(B, 8\)"),
    (lambda e, n, y: (e, n[:3], y), ValueError, r"norms must have shape \(4, 1\)"),
    (lambda e, n, y: (e.clone().index_fill_(0, torch.tensor([1]), float("nan")), n, y), ValueError,
     "embeddings contain NaN"),
    (lambda e, n, y: (e, n.clone().fill_(float("inf")), y), ValueError, "norms contain NaN or inf"),
    (lambda e, n, y: (e, -n, y), ValueError, "non-negative"),
    (lambda e, n, y: (e * 3, n, y), ValueError, "unit-norm"),
    (lambda e, n, y: (e.numpy(), n, y), TypeError, "embeddings must be a torch.Tensor"),
])
def test_bad_inputs_raise_clear_errors(ada, mutate, error, message):
    emb, norms, labels = mutate(*_ok_inputs())
    with pytest.raises(error, match=message):
        ada(emb, norms, labels)


@pytest.mark.parametrize("method", ALL)
def test_batch_of_one_and_equal_norms_stay_finite(method):
    head = build_head(method, 8, 5)
    head.train()
    emb, norms, labels = _ok_inputs()
    for _ in range(3):  # a batch of one: no std
        logits = head(emb[:1], norms[:1], labels[:1])
        assert torch.isfinite(head.loss(logits, labels[:1]))
    for _ in range(3):  # identical norms: std = 0
        logits = head(emb, torch.full((4, 1), 7.0), labels)
        loss = head.loss(logits, labels)
        assert torch.isfinite(loss) and torch.isfinite(logits).all()
    for name, buf in head.named_buffers():
        assert torch.isfinite(buf).all(), name
    if method == "adaface":
        # σ_z kept its value through the batches of one, then moved toward 0, never NaN
        assert 0 < float(head.batch_std) < 100
        assert torch.isfinite(head.diagnostics["z_hat"]).all()


def test_adaface_state_dict_has_the_official_names_and_shapes():
    head = build_head("adaface", 512, 100)
    sd = head.state_dict()
    assert set(sd) == {"kernel", "t", "batch_mean", "batch_std"}
    assert sd["kernel"].shape == (512, 100)
    assert float(sd["batch_mean"]) == 20.0 and float(sd["batch_std"]) == 100.0
    assert set(build_head("arcface", 512, 100).state_dict()) == {"kernel"}
    # a released-style head state loads unchanged
    other = build_head("adaface", 512, 100)
    other.load_state_dict({k: v.clone() + 1 for k, v in sd.items()})
    assert float(other.batch_mean) == 21.0


def test_adaface_eval_mode_does_not_move_the_ema(ada):
    emb, norms, labels = _ok_inputs()
    ada.eval()
    ada(emb, norms * 3, labels)
    assert float(ada.batch_mean) == 20.0 and float(ada.batch_std) == 100.0
    ada.train()
    ada(emb, norms * 3, labels)
    assert float(ada.batch_mean) == pytest.approx(formulas.ema(20.0, 60.0, 0.01), rel=1e-6)


def test_diagnostics_report_the_margin_each_sample_received(ada):
    emb, _, labels = _ok_inputs()
    norms = torch.tensor([[5.0], [20.0], [40.0], [80.0]])
    ada.train()
    ada(emb, norms, labels)
    d = ada.diagnostics
    z = d["z_hat"]
    assert torch.all(z[1:] >= z[:-1]), "ẑ must grow with the norm"
    g_angle, g_add = formulas.adaface_terms(z, 0.4)
    torch.testing.assert_close(d["margin_angle"], g_angle)
    torch.testing.assert_close(d["margin_add"], g_add)
    assert set(d) >= {"cos_y", "norm", "z_hat", "margin_angle", "margin_add", "batch_mean", "batch_std"}


def test_magface_exposes_its_regulariser_and_adds_it_to_the_loss():
    head = build_head("magface", 8, 5)
    emb, _, labels = _ok_inputs()
    norms = torch.tensor([[5.0], [20.0], [60.0], [200.0]])
    logits = head(emb, norms, labels)
    regularizer = torch.as_tensor(formulas.magface_regularizer(norms.numpy().ravel(), 10.0, 110.0))
    torch.testing.assert_close(head.diagnostics["regularizer"], regularizer)
    expected = F.cross_entropy(logits, labels) + 35.0 * regularizer.mean()
    torch.testing.assert_close(head.loss(logits, labels), expected)
