"""A margin refuses, when it is made, a parameter that cannot train: not a number, not finite, or
outside its declared domain, with one ValueError naming the parameter and its valid range. Inside
every domain, up to its edges, a head's loss and gradients stay finite.

The issue's cases (#16): ``build_head`` accepted m = NaN, s = 0, s = 1e308 and t_alpha = 2 and built
a head whose loss was NaN; its unknown-parameter message listed class attributes (``name``,
``needs``, ``modifies_negatives``) as parameters, and passing them raised TypeError.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adaface_lab.heads import build_head, list_heads
from adaface_lab.margins import Domain, build_margin, list_margins, margin_class


def _loss_and_grads(name: str, **params: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of a small head in training mode (float32, as training runs), and the gradients of the
    embeddings and the class weights."""
    gen = torch.Generator().manual_seed(0)
    head = build_head(name, 8, 5, **params).train()
    emb = F.normalize(torch.randn(16, 8, generator=gen), dim=1).requires_grad_()
    norms = torch.rand(16, 1, generator=gen) * 60 + 5
    labels = torch.randint(0, 5, (16,), generator=gen)
    loss = head.loss(head(emb, norms, labels), labels)
    loss.backward()
    return loss.detach(), emb.grad, head.kernel.grad


# ----------------------------------------------------------------------------- the cases


@pytest.mark.parametrize(("params", "named"), [
    ({"m": math.nan}, r"parameter m must be finite \(valid: \[0, 1\]\), got nan"),
    ({"s": 0.0}, r"parameter s = 0 is outside \[1, 1000\]"),
    ({"s": 5e-324}, r"parameter s = 4.94066e-324 is outside \[1, 1000\]"),
    ({"s": 1e308}, r"parameter s = 1e\+308 is outside \[1, 1000\]"),
    ({"s": math.inf}, r"parameter s must be finite"),
    ({"t_alpha": 2.0}, r"parameter t_alpha = 2 is outside \(0, 1\]"),
    ({"t_alpha": 0.0}, r"parameter t_alpha = 0 is outside \(0, 1\]"),
    ({"h": 3.0}, r"parameter h = 3 is outside \[-1, 1\]"),
    ({"m": -0.1}, r"parameter m = -0.1 is outside \[0, 1\]"),
    ({"s": "abc"}, r"parameter s must be a number \(valid: \[1, 1000\]\), got 'abc'"),
    ({"m": True}, r"parameter m must be a number"),
    ({"h": None}, r"parameter h must be a number"),
])
def test_adaface_head_refuses_parameters_that_cannot_train(params, named) -> None:
    with pytest.raises(ValueError, match=r"^AdaFace " + named):
        build_head("adaface", 8, 4, **params)


def test_the_refused_values_did_make_the_loss_nan() -> None:
    """Why they are refused: the same values, forced past the check, give a NaN loss (so the check
    guards something real, and the finite losses below are not vacuous)."""
    for params in ({"m": math.nan}, {"s": 0.0}, {"s": 5e-324}, {"s": 1e308}):
        margin = build_margin("adaface")
        head = build_head("adaface", 8, 5)
        for key, value in params.items():
            object.__setattr__(margin, key, value)
        head.margin = margin
        gen = torch.Generator().manual_seed(0)
        emb = F.normalize(torch.randn(6, 8, generator=gen), dim=1)
        labels = torch.arange(6) % 5
        loss = head.loss(head(emb, torch.full((6, 1), 30.0), labels), labels)
        assert not torch.isfinite(loss), params


@pytest.mark.parametrize("attribute", ["name", "needs", "modifies_negatives", "label", "ranges",
                                       "domains", "margin_name"])
def test_class_attributes_are_not_parameters(attribute: str) -> None:
    """Passing a class attribute by name is an unknown parameter (ValueError, not TypeError), and
    the message lists only the real parameters."""
    with pytest.raises(ValueError, match="unknown parameter") as err:
        build_head("adaface", 8, 4, **{attribute: 1})
    listed = str(err.value).split("unknown")[0]
    for real in ("detach_margin", "validate", "'s'", "'m'", "'h'", "'t_alpha'"):
        assert real in listed
    for other in ("'name'", "'needs'", "'modifies_negatives'", "'label'", "'color'", "'ranges'"):
        assert other not in listed
    if attribute != "margin_name":
        with pytest.raises(ValueError, match=rf"takes \['s', 'm', 'h', 't_alpha'\]; unknown "
                                             rf"parameter\(s\): \['{attribute}'\]"):
            build_margin("adaface", **{attribute: 1})


@pytest.mark.parametrize(("sizes", "named"), [
    ((0, 4), "embedding_size must be an integer ≥ 1, got 0"),
    ((8.5, 4), "embedding_size must be an integer ≥ 1, got 8.5"),
    (("8", 4), "embedding_size must be an integer ≥ 1, got '8'"),
    ((8, 1), "num_classes must be an integer ≥ 2, got 1"),
    ((8, True), "num_classes must be an integer ≥ 2, got True"),
])
def test_head_sizes_must_be_integers(sizes, named) -> None:
    with pytest.raises(ValueError, match=named):
        build_head("arcface", *sizes)


def test_magface_needs_a_norm_interval() -> None:
    with pytest.raises(ValueError, match=r"MagFace needs u_a > l_a .* l_a = 50, u_a = 40"):
        build_margin("magface", l_a=50.0, u_a=40.0)
    with pytest.raises(ValueError, match=r"MagFace parameter l_a = 0 is outside > 0"):
        build_margin("magface", l_a=0.0)


# ----------------------------------------------------------------------------- every margin


@pytest.mark.parametrize("name", list_margins())
def test_defaults_and_slider_ranges_lie_inside_the_domains(name: str) -> None:
    """What the app and the property tests vary (a Range) is a part of what is valid (a Domain)."""
    cls = margin_class(name)
    domains = cls.param_domains()
    assert "s" in domains
    build_margin(name)  # the defaults are valid
    for item, r in cls.param_ranges().items():
        if item in domains:
            assert r.lo in domains[item] and r.hi in domains[item], (name, item, r, domains[item])


def _edges(domain: Domain, default: float) -> list[float]:
    """The domain's finite ends (just inside an open one); the default stands for an infinite end."""
    out = []
    for end, is_open, inward in ((domain.lo, domain.lo_open, math.inf),
                                 (domain.hi, domain.hi_open, -math.inf)):
        if math.isinf(end):
            out.append(default)
        else:
            out.append(float(np.nextafter(end, inward)) if is_open else end)
    return out


def _outside(domain: Domain) -> list[float]:
    """Values just outside each finite end."""
    out = []
    for end, is_open, outward in ((domain.lo, domain.lo_open, -math.inf),
                                  (domain.hi, domain.hi_open, math.inf)):
        if not math.isinf(end):
            out.append(end if is_open else float(np.nextafter(end, outward)))
    return out


@pytest.mark.parametrize("name", list_heads())
def test_every_domain_edge_trains_and_every_outside_value_is_refused(name: str) -> None:
    cls = margin_class(name)
    defaults = build_margin(name).params()
    for item, domain in cls.param_domains().items():
        for value in _edges(domain, defaults[item]):
            try:
                loss, g_emb, g_kernel = _loss_and_grads(name, **{item: value})
            except ValueError as err:  # only a relation between parameters may refuse an edge
                assert "needs" in str(err), (name, item, value, err)
                continue
            assert torch.isfinite(loss), (name, item, value)
            assert torch.isfinite(g_emb).all() and torch.isfinite(g_kernel).all(), (name, item, value)
        for value in _outside(domain):
            with pytest.raises(ValueError, match=rf"^{cls.label} parameter {item} = .* is outside "
                                                 rf"{__import__('re').escape(str(domain))}"):
                build_margin(name, **{item: value})
