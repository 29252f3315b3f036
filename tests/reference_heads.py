"""An independent full-matrix formulation of every head, written from DESIGN.md §2 for the tests.

It does what the official code does: arccos/cos over every logit of the B×C matrix and one-hot
masks to place the margin. It shares no code with ``adaface_lab`` (only torch), so agreement
between the two is evidence, not tautology.

With ``boundary="official"``, MagFace and CurricularFace are restated from their own repositories'
forward passes instead (MagFace's ``MagLinear`` with ``easy_margin=True`` and ``MagLoss``;
CurricularFace's ``head/metrics.py``): cosines clamped to [−1, 1] with no ε, sin θ = √(1 − c²),
cos(θ + m) = c·cos m − sin θ·sin m, and each code's own rule past θ + m = π.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-3


class ReferenceHead:
    """Stateful reference for one method; ``kernel`` (d, C) is shared with the head under test."""

    def __init__(self, method: str, kernel: torch.Tensor, **p: float) -> None:
        self.method = method
        self.kernel = kernel
        self.p = p
        self.batch_mean = torch.tensor([20.0], dtype=kernel.dtype)
        self.batch_std = torch.tensor([100.0], dtype=kernel.dtype)
        self.t = torch.tensor([0.0], dtype=kernel.dtype)

    def __call__(self, emb: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        p, s = self.p, self.p.get("s", 64.0)
        kernel_norm = self.kernel / self.kernel.norm(dim=0, keepdim=True)
        cosine = emb @ kernel_norm
        cosine = cosine.clamp(-1 + EPS, 1 - EPS)
        one_hot = torch.zeros_like(cosine)
        one_hot.scatter_(1, labels.view(-1, 1), 1.0)
        theta = cosine.acos()  # over the whole matrix, as the official code

        if p.get("boundary") == "official":
            return self._own_code(emb @ kernel_norm, norms, labels, one_hot) * s
        if self.method == "softmax":
            out = cosine
        elif self.method == "cosface":
            out = cosine - one_hot * p["m"]
        elif self.method == "arcface":
            out = torch.clip(theta + one_hot * p["m"], EPS, math.pi - EPS).cos()
        elif self.method == "negative_angular":
            out = torch.clip(theta - one_hot * p["m"], EPS, math.pi - EPS).cos()
        elif self.method == "combined":
            angle = torch.where(one_hot > 0, p["m1"] * theta + p["m2"], theta)
            out = torch.clip(angle, EPS, math.pi - EPS).cos() - one_hot * p["m3"]
        elif self.method == "sphereface":
            m = p["m"]
            k = torch.floor(m * theta / math.pi)
            psi = torch.pow(-1.0, k) * torch.cos(m * theta) - 2 * k
            out = torch.where(one_hot > 0, psi, cosine)
        elif self.method == "magface":
            a = norms.clamp(p["l_a"], p["u_a"])  # (B, 1), keeps its gradient
            m_a = (p["u_m"] - p["l_m"]) / (p["u_a"] - p["l_a"]) * (a - p["l_a"]) + p["l_m"]
            out = torch.clip(theta + one_hot * m_a, EPS, math.pi - EPS).cos()
        elif self.method == "curricularface":
            m = p["m"]
            target = (cosine * one_hot).sum(1, keepdim=True)
            with torch.no_grad():
                self.t = target.mean() * 0.01 + 0.99 * self.t
            cos_theta_m = torch.clip(target.acos() + m, EPS, math.pi - EPS).cos()
            hard = (cosine > cos_theta_m) & (one_hot == 0)
            out = torch.where(hard, cosine * (self.t + cosine), cosine)
            out = torch.where(one_hot > 0, cos_theta_m.expand_as(out), out)
        elif self.method == "adaface":
            m, h, alpha = p["m"], p["h"], p.get("t_alpha", 0.01)
            safe = norms.clamp(0.001, 100).detach()
            with torch.no_grad():
                self.batch_mean = safe.mean() * alpha + (1 - alpha) * self.batch_mean
                if safe.numel() > 1:
                    self.batch_std = safe.std() * alpha + (1 - alpha) * self.batch_std
            scaler = ((safe - self.batch_mean) / (self.batch_std + EPS) * h).clip(-1, 1)
            angle = torch.clip(theta + one_hot * (-m * scaler), EPS, math.pi - EPS)
            out = angle.cos() - one_hot * (m + m * scaler)
        else:
            raise KeyError(self.method)
        return out * s

    def _own_code(self, raw: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor,
                  one_hot: torch.Tensor) -> torch.Tensor:
        """MagFace's or CurricularFace's forward as its own repository writes it (unscaled)."""
        p = self.p
        cosine = raw.clamp(-1, 1)
        if self.method == "magface":
            a = norms.clamp(p["l_a"], p["u_a"])
            margin = (p["u_m"] - p["l_m"]) / (p["u_a"] - p["l_a"]) * (a - p["l_a"]) + p["l_m"]  # (B, 1)
            sine = torch.sqrt(1.0 - cosine**2)
            with_margin = cosine * torch.cos(margin) - sine * torch.sin(margin)
            with_margin = torch.where(cosine > 0, with_margin, cosine)  # easy_margin=True
            return one_hot * with_margin + (1.0 - one_hot) * cosine
        if self.method == "curricularface":
            m = p["m"]
            cosine = cosine.clone()
            target = cosine[torch.arange(len(labels)), labels].view(-1, 1)
            sine = torch.sqrt(1.0 - target**2)
            target_m = target * math.cos(m) - sine * math.sin(m)  # cos(θ + m), never clipped
            hard = cosine > target_m
            final = torch.where(target > math.cos(math.pi - m), target_m, target - math.sin(math.pi - m) * m)
            hard_values = cosine[hard]
            with torch.no_grad():
                self.t = target.mean() * 0.01 + 0.99 * self.t
            cosine[hard] = hard_values * (self.t + hard_values)
            cosine.scatter_(1, labels.view(-1, 1), final)
            return cosine
        raise KeyError(f"{self.method} has no official boundary of its own")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels)
        if self.method == "magface":
            a = norms.clamp(self.p["l_a"], self.p["u_a"])
            ce = ce + self.p["lambda_g"] * (1 / a + a / self.p["u_a"] ** 2).mean()
        return ce

