"""Analyses of a training run's records (DESIGN.md §2, "Norm versus quality"): pure functions returning DataFrames.

They take the frames of a run (read with :func:`adaface_lab.runs.load_run`: one row per probe sample and
epoch in ``run.records``, one per optimiser step in ``run.steps``). Notebooks and the app call these
functions and plot the frames with :mod:`adaface_lab.plots.training`; the training loop takes the
correlations of its ``epochs.csv`` from :func:`quality_correlations`::

    run = load_run("runs/demo")
    corr = correlation_by_epoch(run.records)                    # r(‖z‖, q), r(P_y, q) per epoch
    print(sign_check(corr))                                    # does the sign match the paper?
    fit = least_squares(run.records, x="quality", y="norm")    # last epoch
    paths, summary = trajectories(run.records, n=64, seed=0)   # paper Fig. 5

Quality columns: ``quality = 1 - brisque/100`` (higher is better; derived here when absent) and
``severity_quality = 1 - severity`` (SyntheticFaces' ground truth; NaN for real data).
Epochs are addressed by their recorded value, or by a negative index counted from the end of
the recorded epochs (``-1`` = the last).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from .margins import adaface_z_hat
from .quality import quality_from_brisque

__all__ = [
    "REQUIRED_COLUMNS",
    "require_columns",
    "with_quality_columns",
    "available_qualities",
    "resolve_epoch",
    "correlation_by_epoch",
    "quality_correlations",
    "LineFit",
    "least_squares",
    "Trajectories",
    "trajectories",
    "z_hat_distribution",
    "margin_distribution",
    "histogram_by_epoch",
    "ema_over_steps",
    "pick_images_along_norm",
    "SignCheck",
    "sign_check",
    "correlations_by_quality",
    "norm_growth",
    "means_by_bin",
    "z_hat_from_steps",
    "ema_start_weight",
    "TIME_AXES",
    "epoch_clock",
    "time_axis",
]

#: Columns every records frame must have for these analyses (a run records more: adaface_lab.runs.RECORD_COLUMNS).
REQUIRED_COLUMNS: tuple[str, ...] = ("sample_id", "epoch", "norm", "p_y")

_QUALITY_SOURCES = {"quality": "brisque", "severity_quality": "severity"}


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str = "records") -> None:
    """ValueError naming the columns of ``columns`` that ``frame`` lacks (``what`` names the frame)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lack the columns {missing}; present: {list(frame.columns)}")


def with_quality_columns(records: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``quality = 1 - brisque/100`` and ``severity_quality = 1 - severity`` added.

    Each is added only when absent and its source column is present (an existing ``quality``
    column is kept as written by the training loop).
    """
    out = records.copy()
    if "quality" not in out.columns and "brisque" in out.columns:
        out["quality"] = quality_from_brisque(out["brisque"].astype(np.float64))
    if "severity_quality" not in out.columns and "severity" in out.columns:
        out["severity_quality"] = 1.0 - out["severity"].astype(np.float64)
    return out


def available_qualities(records: pd.DataFrame) -> list[str]:
    """The quality columns (``quality``, ``severity_quality``) that hold at least one finite value."""
    rec = with_quality_columns(records)
    return [q for q in _QUALITY_SOURCES if q in rec.columns and np.isfinite(rec[q].to_numpy(np.float64)).any()]


def _quality_column(records: pd.DataFrame, quality: str) -> pd.DataFrame:
    rec = records if quality in records.columns else with_quality_columns(records)
    if quality not in rec.columns:
        src = _QUALITY_SOURCES.get(quality)
        hint = f" (it is derived from {src!r}, which the records lack)" if src else ""
        raise ValueError(f"records have no {quality!r} column{hint}; columns: {list(records.columns)}")
    return rec


def resolve_epoch(records: pd.DataFrame, epoch: int) -> int:
    """The recorded epoch meant by ``epoch``: its value if recorded, or a negative index from the end."""
    epochs = np.sort(records["epoch"].unique())
    if len(epochs) == 0:
        raise ValueError("records are empty")
    if epoch < 0:
        if -epoch > len(epochs):
            raise ValueError(f"epoch {epoch}: only {len(epochs)} epochs recorded")
        return int(epochs[epoch])
    if epoch not in set(epochs.tolist()):
        raise ValueError(f"epoch {epoch} not recorded; recorded epochs: {epochs.tolist()}")
    return int(epoch)


# --------------------------------------------------------------------------- correlations


def _group_pearson(keys: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson r per group: (group keys (G,), r (G,), n (G,)); NaN where n < 2 or a variance is 0."""
    uniq, inv = np.unique(keys, return_inverse=True)
    n = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    mx = np.bincount(inv, x, len(uniq)) / n
    my = np.bincount(inv, y, len(uniq)) / n
    dx, dy = x - mx[inv], y - my[inv]  # centred within each group
    sxy = np.bincount(inv, dx * dy, len(uniq))
    sxx = np.bincount(inv, dx * dx, len(uniq))
    syy = np.bincount(inv, dy * dy, len(uniq))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    # a variance is "zero" when it is below rounding error relative to that variable's own size, so
    # a column of tiny but varying values (P_y ≈ 1e-15 early in a run with s = 64) still correlates
    size_x, size_y = np.zeros(len(uniq)), np.zeros(len(uniq))
    np.maximum.at(size_x, inv, np.abs(x))
    np.maximum.at(size_y, inv, np.abs(y))
    degenerate = (n < 2) | (sxx <= (1e-12 * size_x) ** 2 * n) | (syy <= (1e-12 * size_y) ** 2 * n)
    r = np.where(degenerate, np.nan, np.clip(r, -1.0, 1.0))
    return uniq, r, n.astype(np.int64)


def _p_value(r: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided p-value of r under no correlation (Student t with n - 2 degrees of freedom)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = n - 2.0
        t = r * np.sqrt(dof / np.maximum(1.0 - r * r, 1e-300))
        p = 2.0 * stats.t.sf(np.abs(t), dof)
    return np.where(n > 2, p, np.nan)


def correlation_by_epoch(
    records: pd.DataFrame,
    quality: str = "quality",
    method: Literal["pearson", "spearman"] = "pearson",
    features: Sequence[str] = ("norm", "p_y"),
) -> pd.DataFrame:
    """Correlation of each feature (‖z‖, P_y) with a quality column, per epoch (paper Fig. 4).

    Args:
        records: a run's records.
        quality: ``"quality"`` (1 − BRISQUE/100), ``"severity_quality"`` (1 − severity) or any
            numeric column.
        method: ``"pearson"`` or ``"spearman"`` (Pearson of the within-epoch ranks, ties averaged).
        features: the columns correlated with quality.

    Returns one row per recorded epoch: ``epoch``, ``r_<f>`` and ``p_<f>`` (two-sided p-value)
    for each feature, ``n`` (rows with all of quality and features finite; others are left
    out), ``quality``, ``method``. r is NaN where n < 2 or a column is constant in that epoch
    (e.g. ``severity_quality`` on real data, where severity is NaN: n = 0).
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    require_columns(records, ("epoch", *features))
    rec = _quality_column(records, quality)
    cols = [quality, *features]
    sub = rec[["epoch", *cols]].astype({c: np.float64 for c in cols})
    all_epochs = np.sort(rec["epoch"].unique())
    sub = sub[np.isfinite(sub[cols].to_numpy()).all(axis=1)]
    if method == "spearman":
        sub = pd.concat([sub[["epoch"]], sub.groupby("epoch")[cols].rank(method="average")], axis=1)

    out = pd.DataFrame({"epoch": all_epochs})
    keys = sub["epoch"].to_numpy()
    qv = sub[quality].to_numpy()
    n_col = pd.Series(0, index=all_epochs, dtype=np.int64)
    for f in features:
        uniq, r, n = _group_pearson(keys, sub[f].to_numpy(), qv)
        r_s = pd.Series(r, index=uniq).reindex(all_epochs)
        n_s = pd.Series(n, index=uniq).reindex(all_epochs).fillna(0).astype(np.int64)
        out[f"r_{f}"] = r_s.to_numpy()
        out[f"p_{f}"] = _p_value(r_s.to_numpy(), n_s.to_numpy().astype(np.float64))
        n_col = n_s
    out["n"] = n_col.to_numpy()
    out["quality"] = quality
    out["method"] = method
    return out


def quality_correlations(records: pd.DataFrame) -> dict[str, float]:
    """Pearson r of ‖z‖ and of P_y with each quality over all of ``records`` (one epoch's, as the
    training loop writes them into ``epochs.csv``), by :func:`correlation_by_epoch`'s rules.

    Keys ``r_norm_qseverity``, ``r_p_y_qseverity`` (quality 1 − severity) and ``r_norm_qbrisque``,
    ``r_p_y_qbrisque`` (1 − BRISQUE/100); NaN where the records lack that quality or r is undefined.
    """
    rec = with_quality_columns(records)
    out: dict[str, float] = {}
    for quality in ("severity_quality", "quality"):
        row = None
        if quality in rec.columns and len(rec):
            row = correlation_by_epoch(rec.assign(epoch=0), quality=quality).iloc[0]
        for feature in ("norm", "p_y"):
            out[f"r_{feature}_q{_QUALITY_SOURCES[quality]}"] = float(row[f"r_{feature}"]) if row is not None else np.nan
    return out


@dataclass(frozen=True)
class LineFit:
    """A least-squares line ``y = slope·x + intercept`` through one epoch's records."""

    x: str
    y: str
    epoch: int | None
    slope: float
    intercept: float
    r: float
    n: int
    x_range: tuple[float, float]

    @property
    def line(self) -> pd.DataFrame:
        """Two points of the line at the ends of the data's x range: columns ``x``, ``y``."""
        xs = np.asarray(self.x_range, dtype=np.float64)
        return pd.DataFrame({"x": xs, "y": self.slope * xs + self.intercept})

    def __call__(self, x: Any) -> np.ndarray:
        return self.slope * np.asarray(x, dtype=np.float64) + self.intercept


def least_squares(records: pd.DataFrame, x: str = "quality", y: str = "norm", epoch: int | None = -1) -> LineFit:
    """Ordinary least-squares fit of column ``y`` on column ``x`` at one epoch (``None``: all epochs).

    Rows where either value is not finite are left out. Needs two distinct x values.
    """
    rec = _quality_column(records, x) if x in _QUALITY_SOURCES else records
    rec = _quality_column(rec, y) if y in _QUALITY_SOURCES else rec
    require_columns(rec, (x, y, "epoch"))
    e = None if epoch is None else resolve_epoch(rec, epoch)
    sub = rec if e is None else rec[rec["epoch"] == e]
    xv, yv = sub[x].to_numpy(np.float64), sub[y].to_numpy(np.float64)
    ok = np.isfinite(xv) & np.isfinite(yv)
    xv, yv = xv[ok], yv[ok]
    if len(xv) < 2 or np.ptp(xv) == 0:
        raise ValueError(f"least squares of {y} on {x} at epoch {e}: need 2 distinct finite x values, have {len(xv)} rows")
    dx, dy = xv - xv.mean(), yv - yv.mean()
    sxx, sxy, syy = float(dx @ dx), float(dx @ dy), float(dy @ dy)
    slope = sxy / sxx
    r = sxy / np.sqrt(sxx * syy) if syy > 0 else float("nan")
    return LineFit(
        x=x, y=y, epoch=e, slope=float(slope), intercept=float(yv.mean() - slope * xv.mean()),
        r=float(r), n=int(len(xv)), x_range=(float(xv.min()), float(xv.max())),
    )


# --------------------------------------------------------------------------- trajectories, picks


class Trajectories(NamedTuple):
    """``paths``: (sample_id, epoch, norm, p_y) rows of the chosen samples; ``summary``: one row per sample."""

    paths: pd.DataFrame
    summary: pd.DataFrame


def trajectories(records: pd.DataFrame, n: int = 64, seed: int = 0) -> Trajectories:
    """(‖z‖, P_y) over epochs for ``n`` probe samples drawn at random (paper Fig. 5).

    The draw depends only on ``seed`` and the set of sample ids (same seed, same samples).
    ``paths`` has columns ``sample_id, epoch, norm, p_y`` (and ``step`` when recorded) sorted by sample and epoch;
    ``summary`` has ``sample_id, first_epoch, last_epoch, first_norm, last_norm, first_p_y,
    last_p_y`` (and ``label``, ``last_quality`` when recorded), sorted by ``last_norm``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    require_columns(records, REQUIRED_COLUMNS)
    ids = np.sort(records["sample_id"].unique())
    chosen = np.sort(np.random.default_rng(seed).choice(ids, size=min(n, len(ids)), replace=False))
    sub = records[records["sample_id"].isin(chosen)].sort_values(["sample_id", "epoch"], kind="stable")
    paths = sub[["sample_id", "epoch", *(["step"] if "step" in sub.columns else []), "norm", "p_y"]]
    paths = paths.reset_index(drop=True)

    g = sub.groupby("sample_id", sort=True)
    first, last = g.head(1).set_index("sample_id"), g.tail(1).set_index("sample_id")
    summary = pd.DataFrame(
        {
            "first_epoch": first["epoch"],
            "last_epoch": last["epoch"],
            "first_norm": first["norm"],
            "last_norm": last["norm"],
            "first_p_y": first["p_y"],
            "last_p_y": last["p_y"],
        }
    )
    if "label" in last.columns:
        summary.insert(0, "label", last["label"])
    if "quality" in last.columns:
        summary["last_quality"] = last["quality"]
    summary = summary.reset_index().sort_values("last_norm", kind="stable").reset_index(drop=True)
    return Trajectories(paths=paths, summary=summary)


def pick_images_along_norm(
    records: pd.DataFrame, k: int = 8, epoch: int = -1, column: str = "norm"
) -> pd.DataFrame:
    """``k`` samples spread evenly along the norm axis at one epoch (for the paper's Fig. 5 strip).

    Targets are ``k`` evenly spaced values from the lowest to the highest norm; each takes the
    not-yet-picked sample nearest to it (ties: the lower sample id). Deterministic.
    Returns ``k`` rows sorted by norm: ``target, sample_id, <column>`` and, when recorded,
    ``label, p_y, quality, brisque, severity``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    require_columns(records, ("sample_id", "epoch", column))
    e = resolve_epoch(records, epoch)
    sub = records[(records["epoch"] == e) & np.isfinite(records[column].to_numpy(np.float64))]
    sub = sub.drop_duplicates("sample_id", keep="last").sort_values("sample_id", kind="stable")
    if len(sub) < k:
        raise ValueError(f"epoch {e} has {len(sub)} samples with a finite {column}; {k} asked")
    v = sub[column].to_numpy(np.float64)
    targets = np.linspace(v.min(), v.max(), k)
    free = np.ones(len(v), dtype=bool)
    picked = np.empty(k, dtype=np.int64)
    for i, t in enumerate(targets):  # k is small; each step is vectorised over the samples
        d = np.where(free, np.abs(v - t), np.inf)
        j = int(np.argmin(d))  # first minimum = lowest sample id (sub is sorted by id)
        picked[i] = j
        free[j] = False
    extra = [c for c in ("label", "p_y", "quality", "brisque", "severity") if c in sub.columns and c != column]
    out = sub.iloc[picked][["sample_id", column, *extra]].reset_index(drop=True)
    out.insert(0, "target", targets)
    out.insert(1, "epoch", e)
    return out.sort_values(column, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- distributions over time


def _qname(q: float) -> str:
    pct = q * 100.0
    return f"q{int(round(pct)):02d}" if abs(pct - round(pct)) < 1e-9 else f"q{pct:g}"


_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _quantiles_by_epoch(frame: pd.DataFrame, column: str, quantiles: Sequence[float]) -> pd.DataFrame:
    v = frame[["epoch", column]].astype({column: np.float64})
    v = v[np.isfinite(v[column].to_numpy())]
    names = [_qname(q) for q in quantiles]
    if len(v) == 0:
        return pd.DataFrame(columns=["epoch", "n", "mean", "std", *names])
    g = v.groupby("epoch", sort=True)[column]
    out = pd.DataFrame({"n": g.size(), "mean": g.mean(), "std": g.std(ddof=1)})
    qs = g.quantile(list(quantiles)).unstack()  # (epochs, quantiles), linear interpolation
    qs.columns = names
    return out.join(qs).reset_index()


def z_hat_distribution(records: pd.DataFrame, quantiles: Sequence[float] = _QUANTILES) -> pd.DataFrame:
    """Per-epoch distribution of AdaFace's ẑ (in [-1, 1]).

    One row per epoch with a finite ẑ: ``epoch, n, mean, std``, one column per quantile
    (``q05, q25, q50, q75, q95`` by default), ``frac_low`` and ``frac_high`` (share clipped at
    −1, ArcFace-like, and at +1). Empty (same columns) when ẑ is absent or all NaN (a head
    other than AdaFace).
    """
    names = ["epoch", "n", "mean", "std", *[_qname(q) for q in quantiles], "frac_low", "frac_high"]
    if "z_hat" not in records.columns:
        return pd.DataFrame(columns=names)
    out = _quantiles_by_epoch(records, "z_hat", quantiles)
    if len(out) == 0:
        return pd.DataFrame(columns=names)
    z = records[["epoch", "z_hat"]].astype({"z_hat": np.float64}).dropna()
    tol = 1e-6
    flags = pd.DataFrame({"epoch": z["epoch"], "frac_low": z["z_hat"] <= -1 + tol, "frac_high": z["z_hat"] >= 1 - tol})
    fr = flags.groupby("epoch", sort=True)[["frac_low", "frac_high"]].mean().reset_index()
    return out.merge(fr, on="epoch")[names]


def margin_distribution(
    records: pd.DataFrame,
    terms: Sequence[str] = ("margin_angle", "margin_add"),
    quantiles: Sequence[float] = _QUANTILES,
) -> pd.DataFrame:
    """Per-epoch distribution of the margin terms each sample received (long format).

    One row per (term, epoch): ``term, epoch, n, mean, std`` and the quantile columns. Terms
    absent from the records or all NaN are left out; empty (same columns) if none is present.
    For AdaFace ``margin_angle`` = g_angle = −m·ẑ and ``margin_add`` = g_add = m·ẑ + m.
    """
    names = ["term", "epoch", "n", "mean", "std", *[_qname(q) for q in quantiles]]
    parts = []
    for t in terms:  # a handful of columns
        if t in records.columns:
            d = _quantiles_by_epoch(records, t, quantiles)
            if len(d):
                parts.append(d.assign(term=t))
    if not parts:
        return pd.DataFrame(columns=names)
    return pd.concat(parts, ignore_index=True)[names]


def histogram_by_epoch(
    records: pd.DataFrame, column: str, bins: int = 40, range: tuple[float, float] | None = None
) -> pd.DataFrame:
    """Histogram of ``column`` per epoch on shared bins (for ridge plots), long format.

    Rows: ``epoch, left, right, center, count, density`` (density integrates to 1 per epoch).
    ``range`` defaults to the finite data's min and max. Non-finite values are left out.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    require_columns(records, ("epoch", column))
    v = records[column].to_numpy(np.float64)
    ok = np.isfinite(v)
    cols = ["epoch", "left", "right", "center", "count", "density"]
    if not ok.any():
        return pd.DataFrame(columns=cols)
    v, ep = v[ok], records["epoch"].to_numpy()[ok]
    lo, hi = (float(v.min()), float(v.max())) if range is None else (float(range[0]), float(range[1]))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    inside = (v >= lo) & (v <= hi)
    b = np.clip(np.searchsorted(edges, v[inside], side="right") - 1, 0, bins - 1)  # last bin is closed
    epochs, e_idx = np.unique(ep[inside], return_inverse=True)
    counts = np.bincount(e_idx * bins + b, minlength=len(epochs) * bins).reshape(len(epochs), bins)
    width = edges[1] - edges[0]
    with np.errstate(invalid="ignore"):
        density = counts / (counts.sum(axis=1, keepdims=True) * width)
    return pd.DataFrame(
        {
            "epoch": np.repeat(epochs, bins),
            "left": np.tile(edges[:-1], len(epochs)),
            "right": np.tile(edges[1:], len(epochs)),
            "center": np.tile((edges[:-1] + edges[1:]) / 2, len(epochs)),
            "count": counts.ravel(),
            "density": density.ravel(),
        }
    )


def ema_over_steps(steps: pd.DataFrame, smoothing: float = 0.9) -> pd.DataFrame:
    """The head's EMA statistics μ_z, σ_z and the smoothed loss/accuracy against the global step.

    Args:
        steps: the run's steps frame (``epoch, step, loss, acc, lr, batch_mean, batch_std, images_per_s``);
            missing optional columns are simply absent from the result.
        smoothing: weight of the past in the exponential smoothing of loss and accuracy
            (0: none; TensorBoard-style, bias-corrected).

    Returns, sorted by step: ``global_step``, ``epoch``, ``step``, ``mu_z`` (= ``batch_mean``,
    the head's EMA of the batch mean norm after the step), ``sigma_z`` (= ``batch_std``), and for
    ``loss``/``acc`` the raw value and ``<name>_ema``; ``lr`` and ``images_per_s`` as recorded.
    ``global_step`` is ``step`` when steps count across epochs, else the row's position.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if len(steps) == 0:
        return pd.DataFrame(columns=["global_step", "epoch", "step", "mu_z", "sigma_z"])
    keys = [c for c in ("epoch", "step") if c in steps.columns]
    st = steps.sort_values(keys, kind="stable").reset_index(drop=True) if keys else steps.reset_index(drop=True)
    out = pd.DataFrame(index=st.index)
    if "step" in st.columns and st["step"].is_monotonic_increasing and st["step"].is_unique:
        out["global_step"] = st["step"].to_numpy()
    else:
        out["global_step"] = np.arange(len(st))
    for c in ("epoch", "step"):
        if c in st.columns:
            out[c] = st[c].to_numpy()
    for src, dst in (("batch_mean", "mu_z"), ("batch_std", "sigma_z")):
        if src in st.columns:
            out[dst] = st[src].to_numpy(np.float64)
    for c in ("loss", "acc"):
        if c in st.columns:
            v = st[c].astype(np.float64)
            out[c] = v.to_numpy()
            out[f"{c}_ema"] = v.ewm(alpha=1.0 - smoothing, adjust=True).mean().to_numpy() if smoothing > 0 else v.to_numpy()
    for c in ("lr", "images_per_s"):
        if c in st.columns:
            out[c] = st[c].to_numpy()
    return out


# --------------------------------------------------------------------------- the sign of the finding


@dataclass(frozen=True)
class SignCheck:
    """Whether the norm–quality correlation has the paper's sign; ``str()`` gives the statement.

    ``verdict`` is ``"matches"`` (r ≥ threshold), ``"reversed"`` (r ≤ −threshold) or
    ``"unclear"`` (|r| < threshold, or no finite r).
    """

    verdict: Literal["matches", "reversed", "unclear"]
    epoch: int | None
    r_norm: float
    r_p_y: float
    threshold: float
    message: str

    def __str__(self) -> str:
        return self.message


def sign_check(correlations: pd.DataFrame, threshold: float = 0.1, epoch: int = -1) -> SignCheck:
    """Plain-language check of the paper's finding on a :func:`correlation_by_epoch` frame.

    The paper finds that ‖z‖ correlates *positively* with image quality, early in training and
    more than P_y does. On some data the sign comes out reversed (high norms on low-quality
    images); the author's advice in the official repo's issues was then to flip the sign of h,
    so that AdaFace still gives low-quality images the easy-sample margin. This function says
    which case the run is in, at ``epoch`` (default the last with a finite r), and never hides
    a reversal.
    """
    require_columns(correlations, ("epoch", "r_norm"), what="correlations")
    c = correlations[np.isfinite(correlations["r_norm"].to_numpy(np.float64))].sort_values("epoch")
    q = str(correlations["quality"].iloc[0]) if "quality" in correlations.columns and len(correlations) else "quality"
    method = str(correlations["method"].iloc[0]).capitalize() if "method" in correlations.columns and len(correlations) else "Pearson"
    qtext = {"quality": "quality (1 − BRISQUE/100)", "severity_quality": "ground-truth quality (1 − severity)"}.get(q, q)
    if len(c) == 0:
        return SignCheck("unclear", None, float("nan"), float("nan"), threshold,
                         f"No finite correlation of the norm with {qtext}: nothing to compare with the paper.")
    if epoch == -1:
        row = c.iloc[-1]  # the last epoch with a finite r
    else:
        e_asked = resolve_epoch(correlations, epoch)
        row = correlations[correlations["epoch"] == e_asked].iloc[0]
    e, r = int(row["epoch"]), float(row["r_norm"])
    r_py = float(row["r_p_y"]) if "r_p_y" in c.columns else float("nan")
    n_pos, n_neg = int((c["r_norm"] >= threshold).sum()), int((c["r_norm"] <= -threshold).sum())
    history = f" Over the {len(c)} epochs: {n_pos} with r ≥ {threshold:g}, {n_neg} with r ≤ −{threshold:g}."
    at = f"At epoch {e}, {method} r(‖z‖, {qtext}) = {r:+.3f}"
    if np.isfinite(r_py):
        stronger = "more" if abs(r) > abs(r_py) else "less"
        vs_py = f" The norm tracks quality {stronger} strongly than P_y does (r(P_y) = {r_py:+.3f})."
    else:
        vs_py = ""
    if not np.isfinite(r):
        verdict = "unclear"
        msg = f"At epoch {e} the correlation of the norm with {qtext} is undefined (too few rows or constant values).{history}"
    elif r >= threshold:
        verdict = "matches"
        msg = f"{at}: positive, as the paper finds (higher norm, higher quality).{vs_py}{history}"
    elif r <= -threshold:
        verdict = "reversed"
        msg = (
            f"{at}: the sign is REVERSED relative to the paper: on this run high norms go with low quality. "
            f"AdaFace would then treat low-quality images as the hard ones. The author's advice for such data "
            f"(official repo issues) is to flip the sign of h (e.g. h = −0.333).{vs_py}{history}"
        )
    else:
        verdict = "unclear"
        msg = (
            f"{at}: |r| < {threshold:g}, no clear sign; the norm is not (yet) a usable quality proxy on this run."
            f"{vs_py}{history}"
        )
    return SignCheck(verdict, e, r, r_py, threshold, msg)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- taught in notebooks 2-4


def correlations_by_quality(
    records: pd.DataFrame,
    qualities: Sequence[str] | None = None,
    method: Literal["pearson", "spearman"] = "pearson",
    features: Sequence[str] = ("norm", "p_y"),
) -> pd.DataFrame:
    """:func:`correlation_by_epoch` for each quality column, stacked: one row per (quality, epoch).

    ``qualities`` defaults to :func:`available_qualities` (BRISQUE's and, on SyntheticFaces, the
    ground truth's). Taught in ``notebooks/03_norm_vs_quality.ipynb`` (§3.1) and
    ``notebooks/04_trajectories.ipynb`` (§4.2).
    """
    chosen = available_qualities(records) if qualities is None else list(qualities)
    if not chosen:
        raise ValueError(f"records hold no quality column with a finite value; columns: {list(records.columns)}")
    return pd.concat([correlation_by_epoch(records, quality=q, method=method, features=features) for q in chosen],
                     ignore_index=True)


def norm_growth(records: pd.DataFrame, start: int | None = None, end: int = -1) -> pd.DataFrame:
    """Each sample's change of feature norm between two epochs.

    Returns the ``end`` epoch's records (default the last) with ``norm_growth`` = ‖z‖ at ``end``
    − ‖z‖ at ``start`` (default the first recorded epoch) added; NaN for a sample not recorded at
    ``start``. Epochs are addressed as in :func:`resolve_epoch`. Taught in
    ``notebooks/04_trajectories.ipynb`` (§4.2).
    """
    require_columns(records, ("sample_id", "epoch", "norm"))
    e_end = resolve_epoch(records, end)
    e_start = int(records["epoch"].min()) if start is None else resolve_epoch(records, start)
    before = records[records["epoch"] == e_start].drop_duplicates("sample_id", keep="last").set_index("sample_id")
    after = records[records["epoch"] == e_end].reset_index(drop=True)
    grown = after["norm"].to_numpy(np.float64) - before["norm"].reindex(after["sample_id"]).to_numpy(np.float64)
    return after.assign(norm_growth=grown)


def means_by_bin(
    records: pd.DataFrame,
    by: str,
    bins: int | Sequence[float],
    columns: Sequence[str],
    epoch: int = -1,
    equal_counts: bool = False,
) -> pd.DataFrame:
    """Mean of ``columns`` within bins of column ``by``, at one epoch.

    ``bins``: edges (ascending; each bin holds (left, right], the first also its left edge) or a
    number of bins — of equal width, or with ``equal_counts=True`` of equal size (4: quartiles).
    Rows whose ``by`` is not finite are left out; NaN values of a column are left out of its mean.
    Returns one row per non-empty bin, indexed by its interval (index name ``"<by> bin"``): the
    mean of each column, and ``n``, the rows in the bin. Taught in
    ``notebooks/03_norm_vs_quality.ipynb`` (§3.3, by severity) and ``notebooks/04_trajectories.ipynb``
    (§4.3, by norm quartile).
    """
    require_columns(records, ("epoch", by, *columns))
    at = records[records["epoch"] == resolve_epoch(records, epoch)]
    at = at[np.isfinite(at[by].to_numpy(np.float64))]
    if equal_counts:
        if not isinstance(bins, (int, np.integer)):
            raise ValueError("equal_counts=True takes a number of bins, not edges")
        binned = pd.qcut(at[by], int(bins))
    else:
        binned = pd.cut(at[by], bins, include_lowest=True)
    grouped = at.astype({c: np.float64 for c in columns}).groupby(binned, observed=True)
    out = grouped[list(columns)].mean()
    out["n"] = grouped.size()
    return out.rename_axis(f"{by} bin")


def z_hat_from_steps(records: pd.DataFrame, steps: pd.DataFrame, h: float) -> np.ndarray:
    """AdaFace's ẑ of each record recomputed from its norm and the EMA (μ_z, σ_z) of its step: (N,).

    Each record carries the optimiser ``step`` at which its sample was seen; ``steps`` holds the
    head's ``batch_mean`` and ``batch_std`` after that step (the values its ẑ used, updated before
    use). NaN for a record whose step is not in ``steps``. In records' order. Taught in
    ``notebooks/02_adaptive_margin.ipynb`` (§2.4).
    """
    require_columns(records, ("step", "norm"))
    require_columns(steps, ("step", "batch_mean", "batch_std"), what="steps")
    ema = steps.drop_duplicates("step", keep="last").set_index("step")
    mean = ema["batch_mean"].reindex(records["step"]).to_numpy(np.float64)
    std = ema["batch_std"].reindex(records["step"]).to_numpy(np.float64)
    return np.asarray(adaface_z_hat(records["norm"].to_numpy(np.float64), mean, std, h))


def ema_start_weight(n_steps: int, t_alpha: float) -> float:
    """The weight an EMA's starting value keeps after ``n_steps`` updates μ ← t_alpha·x + (1 − t_alpha)·μ.

    (1 − t_alpha)^n: AdaFace's σ_z starts at 100, so early in a run its EMA still remembers that
    start (time constant 1/t_alpha steps). Taught in ``notebooks/02_adaptive_margin.ipynb`` (§2.4).
    """
    if not 0.0 < t_alpha <= 1.0:
        raise ValueError(f"t_alpha must lie in (0, 1], got {t_alpha}")
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    return float((1.0 - t_alpha) ** n_steps)


# --------------------------------------------------------------------------- time: epochs, steps, images


#: The x-axes a figure over training can use, and their titles: the epoch, the optimiser step, or the
#: images seen (summed over processes). On a small data set an epoch is only a few steps, while the paper's
#: "from early in training" counts tens of thousands: the step and image axes make that comparable.
TIME_AXES: dict[str, str] = {"epoch": "epoch", "step": "optimiser step", "images": "images seen"}


def epoch_clock(steps: pd.DataFrame) -> pd.DataFrame:
    """How long each epoch was, from a run's steps frame (``epoch, step, batch``, one row per step).

    Returns one row per epoch: ``epoch``, ``steps`` (optimiser steps in it), ``images`` (images trained on
    in it), ``last_step`` (the global step that ended it) and ``images_seen`` (images since the start of the
    run, at its end).
    """
    require_columns(steps, ("epoch", "step", "batch"), what="steps")
    st = steps.sort_values("step", kind="stable")
    seen = st["batch"].astype(np.int64).cumsum()
    g = st.assign(images_seen=seen).groupby("epoch", sort=True)
    return pd.DataFrame({"steps": g.size(), "images": g["batch"].sum().astype(np.int64),
                         "last_step": g["step"].max(), "images_seen": g["images_seen"].max()}).reset_index()


def time_axis(frame: pd.DataFrame, steps: pd.DataFrame | None, axis: str = "epoch") -> np.ndarray:
    """The x positions of ``frame``'s rows on a time ``axis`` of :data:`TIME_AXES`.

    A frame with a ``step`` column (records, trajectories' paths) is placed at each row's own step (or the
    images seen up to and including it); a per-epoch frame (correlations) at the step that ended its
    ``epoch`` (or the images seen by then). ``"epoch"`` returns the epochs and needs no ``steps``.
    """
    if axis not in TIME_AXES:
        raise ValueError(f"axis must be one of {list(TIME_AXES)}, got {axis!r}")
    if axis == "epoch":
        return frame["epoch"].to_numpy()
    if steps is None or len(steps) == 0:
        raise ValueError(f"a {TIME_AXES[axis]} axis needs the run's steps (run.steps); none were given")
    if "step" in frame.columns:
        if axis == "step":
            return frame["step"].to_numpy()
        st = steps.sort_values("step", kind="stable")
        seen = pd.Series(st["batch"].astype(np.int64).cumsum().to_numpy(), index=st["step"].to_numpy())
        return seen.reindex(frame["step"].to_numpy()).to_numpy()
    clock = epoch_clock(steps).set_index("epoch")
    return clock["last_step" if axis == "step" else "images_seen"].reindex(frame["epoch"].to_numpy()).to_numpy()
