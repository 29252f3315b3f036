"""The formulas the tests check the lab against, written out once from DESIGN.md §2.

These restate the maths independently: NumPy only, nothing imported from ``adaface_lab``, so a
test that compares the library with them compares two separate writings of the same formula.
Angles in radians unless a name says degrees.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-3
"""ε of the official AdaFace code (cosine clamp, angle clip, ẑ denominator)."""


def z_hat(norm, mean, std, h: float, eps: float = EPS):
    """AdaFace's ẑ = clip(h·(‖z‖ − μ_z)/(σ_z + ε), −1, 1), the norm clipped to [0.001, 100] first."""
    return np.clip(h * (np.clip(norm, 0.001, 100.0) - mean) / (std + eps), -1.0, 1.0)


def adaface_terms(z, m: float):
    """AdaFace's (g_angle, g_add) = (−m·ẑ, m·ẑ + m)."""
    return -m * z, m * z + m


def ema(old, batch_value, alpha: float):
    """One step of the heads' moving averages: alpha·batch + (1 − alpha)·old (AdaFace's μ_z, σ_z
    with alpha = t_alpha; CurricularFace's t with alpha = 0.01)."""
    return alpha * batch_value + (1.0 - alpha) * old


def magface_regularizer(norm, l_a: float, u_a: float):
    """MagFace's g(a) = 1/a + a/u_a², a = clamp(‖z‖, l_a, u_a)."""
    a = np.clip(norm, l_a, u_a)
    return 1.0 / a + a / u_a**2


def quality(brisque):
    """The lab's quality score of an image: 1 − BRISQUE/100."""
    return 1.0 - np.asarray(brisque) / 100.0


def two_class_p_y(target_logit, negative_logit):
    """P_y of a two-class softmax: the logistic function of the logit difference."""
    return 1.0 / (1.0 + np.exp(-(target_logit - negative_logit)))


def arc_gst(deg, s: float, shift, add, phi_deg: float, detached: bool = False):
    """|g| along the arc from W_y toward W_j (θ_y in degrees) for f = s·(cos(θ + shift) − add).

    The official code clips θ + shift to [ε, π − ε], where df/dc = 0; detached: df/dc = s. The
    cosine clamp is not modelled, so compare away from 0° and 180°.
    """
    theta = np.radians(np.asarray(deg, dtype=float))
    theta_j = np.abs(theta - np.radians(phi_deg))
    angle = theta + shift
    f = s * (np.cos(np.clip(angle, EPS, np.pi - EPS)) - add)
    active = (angle >= EPS) & (angle <= np.pi - EPS)
    with np.errstate(divide="ignore", invalid="ignore"):  # θ = 0: outside any compared range
        dfdc = s if detached else np.where(active, s * np.sin(angle) / np.sin(theta), 0.0)
        return (1.0 - two_class_p_y(f, s * np.cos(theta_j))) * dfdc


def curricular_arc(deg, s: float, m: float, t: float, phi_deg: float):
    """CurricularFace along the arc (θ_y in degrees), the AdaFace code's clip: (|g|, |g_j|).

    Target f = s·cos(θ + m), θ + m clipped to [ε, π − ε]; the negative is hard when
    c_j > cos(θ + m) (clipped), and then its logit is s·c_j·(t + c_j), so d logit_j/dc_j =
    s·(t + 2c_j); otherwise s·c_j. g = (P_y − 1)·df/dc, g_j = P_j·d logit_j/dc_j.
    """
    theta = np.radians(np.asarray(deg, dtype=float))
    c_j = np.cos(np.abs(theta - np.radians(phi_deg)))
    angle = theta + m
    target = np.cos(np.clip(angle, EPS, np.pi - EPS))
    hard = c_j > target
    negative = np.where(hard, c_j * (t + c_j), c_j)
    p_y = two_class_p_y(s * target, s * negative)
    active = (angle >= EPS) & (angle <= np.pi - EPS)
    dfdc = np.where(active, s * np.sin(angle) / np.sin(theta), 0.0)
    dneg = np.where(hard, s * (t + 2 * c_j), s)
    return (1 - p_y) * dfdc, (1 - p_y) * dneg


def adaface_zero_band_deg(m: float, z: float, phi_deg: float = 90.0):
    """AdaFace's band of misclassified samples with no gradient on the arc at φ = 90°, degrees.

    With ẑ > 0 the angle θ − m·ẑ is clipped at ε for θ < m·ẑ + ε, where f/s = cos ε − m·(1 + ẑ)
    and the negative logit over s is cos(90° − θ) = sin θ, so P_y < ½ from θ = arcsin(cos ε −
    m·(1 + ẑ)). None when that is not below m·ẑ + ε.
    """
    assert phi_deg == 90.0, "the closed form is for φ = 90°"
    hi = m * z + EPS
    level = np.cos(EPS) - m * (1 + z)
    lo = np.arcsin(np.clip(level, -1.0, 1.0)) if level > -1 else 0.0
    return (np.degrees(lo), np.degrees(hi)) if lo < hi else None


def softmax_p_y(logits, labels):
    """P_y: the softmax probability of each row's target class, (B, C) logits -> (B,)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return p[np.arange(len(p)), np.asarray(labels)]


def z_hat_from_p_y(p_y, mean, std, h: float, eps: float = EPS):
    """AdaFace's ẑ with P_y as the proxy: clip(h·(P_y − μ_P)/(σ_P + ε), −1, 1), P_y not clipped."""
    return np.clip(h * (np.asarray(p_y) - mean) / (std + eps), -1.0, 1.0)


def filled_area(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Area and centroid (x, y) of the polygons a NaN-separated outline encloses (shoelace formula;
    polygons are assumed disjoint, without holes)."""
    total, moment = 0.0, np.zeros(2)
    for px, py in zip(np.split(x, np.flatnonzero(np.isnan(x))), np.split(y, np.flatnonzero(np.isnan(y)))):
        px, py = px[~np.isnan(px)], py[~np.isnan(py)]
        cross = px * np.roll(py, -1) - np.roll(px, -1) * py
        total += cross.sum() / 2
        moment += [((px + np.roll(px, -1)) * cross).sum() / 6, ((py + np.roll(py, -1)) * cross).sum() / 6]
    return abs(total), moment / total
