"""AdaFace's quality proxy (``proxy="norm"`` or ``"p_y"``), against formulas written out in NumPy.

With ``proxy="p_y"`` ẑ comes from each sample's margin-free P_y (softmax of s·cos θ, detached), normalised
by an EMA of P_y's own batch mean and std that starts at (0, 1). The head's logits, ẑ and buffers over
several steps are recomputed here from the kernel and the embeddings alone; the gradient is that of a
fixed ẑ (no gradient flows through the proxy); h = 0 is CosFace for either proxy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adaface_lab.heads import build_head
from adaface_lab.margins import ADAFACE_PROXIES

from . import formulas

S, M, ALPHA, EPS = 64.0, 0.4, 0.01, formulas.EPS


def _batch(seed: int, batch: int = 12, dim: int = 8, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(batch, dim, generator=gen, dtype=torch.float64), dim=1)
    norms = torch.rand(batch, 1, generator=gen, dtype=torch.float64) * 40 + 5
    return emb, norms, torch.randint(0, classes, (batch,), generator=gen)


def _expected_logits(cos: np.ndarray, labels: np.ndarray, z: np.ndarray) -> np.ndarray:
    """AdaFace's logits for cosines (B, C) and ẑ (B,): s·c_j off target, s·(cos(θ − mẑ) − (mẑ + m)) on it."""
    rows = np.arange(len(labels))
    g_angle, g_add = formulas.adaface_terms(z, M)
    theta = np.arccos(np.clip(cos[rows, labels], -1 + EPS, 1 - EPS))
    out = S * cos.copy()
    out[rows, labels] = S * (np.cos(np.clip(theta + g_angle, EPS, np.pi - EPS)) - g_add)
    return out


def test_p_y_proxy_follows_its_own_ema_over_several_steps() -> None:
    head = build_head("adaface", 8, 5, proxy="p_y", m=M, h=0.333).double().train()
    kernel = head.kernel.detach().numpy()
    unit_kernel = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    assert float(head.batch_mean) == 0.0 and float(head.batch_std) == 1.0
    mean, std = 0.0, 1.0
    for step in range(4):
        emb, norms, labels = _batch(step)
        cos = emb.numpy() @ unit_kernel  # (B, C)
        p_y = formulas.softmax_p_y(S * cos, labels.numpy())  # margin off
        mean = formulas.ema(mean, p_y.mean(), ALPHA)
        std = formulas.ema(std, p_y.std(ddof=1), ALPHA)
        z = formulas.z_hat_from_p_y(p_y, mean, std, 0.333)
        logits = head(emb, norms, labels)
        np.testing.assert_allclose(head.diagnostics["z_hat"].numpy(), z, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(float(head.batch_mean), mean, rtol=1e-10)
        np.testing.assert_allclose(float(head.batch_std), std, rtol=1e-10)
        np.testing.assert_allclose(logits.detach().numpy(), _expected_logits(cos, labels.numpy(), z), atol=1e-9)
    # the norm plays no part: other norms, the same ẑ (in eval mode, where the EMA stands still)
    head.eval()
    head(emb, norms, labels)
    first = head.diagnostics["z_hat"].clone()
    head(emb, norms * 3 + 50, labels)
    torch.testing.assert_close(head.diagnostics["z_hat"], first)
    assert torch.any(first != 0)


def test_no_gradient_flows_through_the_p_y_proxy() -> None:
    """The head's gradient equals that of the same logits with ẑ held constant."""
    head = build_head("adaface", 8, 5, proxy="p_y", m=M, h=1.0).double().train()
    head.batch_std.fill_(0.05)  # a spread that makes ẑ vary across the batch (not all clipped, not all 0)
    emb, norms, labels = _batch(7)
    emb = emb.requires_grad_()
    weights = torch.randn(12, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (head(emb, norms, labels) * weights).sum().backward()
    z = head.diagnostics["z_hat"]
    assert 0 < int((z.abs() < 1).sum()) and len(torch.unique(z)) > 3

    emb_ref = emb.detach().clone().requires_grad_()
    cos = emb_ref @ F.normalize(head.kernel.detach(), dim=0)  # (B, C)
    rows = torch.arange(12)
    theta = torch.acos(cos[rows, labels].clamp(-1 + EPS, 1 - EPS))
    target = S * (torch.cos((theta - M * z).clamp(EPS, np.pi - EPS)) - (M * z + M))
    logits = (S * cos).index_put((rows, labels), target)
    (logits * weights).sum().backward()
    torch.testing.assert_close(emb.grad, emb_ref.grad)


@pytest.mark.parametrize("proxy", ADAFACE_PROXIES)
def test_h_zero_is_cosface_for_either_proxy(proxy: str) -> None:
    ada = build_head("adaface", 8, 5, proxy=proxy, h=0.0, m=M).double().train()
    cosface = build_head("cosface", 8, 5, m=M).double()
    cosface.kernel.data.copy_(ada.kernel.data)
    for step in range(3):
        emb, norms, labels = _batch(10 + step)
        a_in, c_in = emb.clone().requires_grad_(), emb.clone().requires_grad_()
        a, c = ada(a_in, norms, labels), cosface(c_in, norms, labels)
        torch.testing.assert_close(a, c)
        a.logsumexp(dim=1).sum().backward()
        c.logsumexp(dim=1).sum().backward()
        torch.testing.assert_close(a_in.grad, c_in.grad)
        assert torch.all(ada.diagnostics["z_hat"] == 0)


def test_the_norm_proxy_is_the_default_and_bad_proxies_are_refused() -> None:
    head = build_head("adaface", 8, 5)
    assert head.proxy == "norm" and float(head.batch_mean) == 20.0 and float(head.batch_std) == 100.0
    assert "proxy=norm" in repr(head)
    assert set(head.state_dict()) == set(build_head("adaface", 8, 5, proxy="p_y").state_dict())
    with pytest.raises(ValueError, match="proxy must be one of norm, p_y; got 'brisque'"):
        build_head("adaface", 8, 5, proxy="brisque")
    with pytest.raises(ValueError, match="unknown parameter.*proxy"):
        build_head("arcface", 8, 5, proxy="p_y")
