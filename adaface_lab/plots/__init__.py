"""Plotly figure builders shared by the Streamlit app and the notebooks.

Each builder takes library results and returns a ``go.Figure``; the maths lives in
:mod:`adaface_lab.margins` and :mod:`adaface_lab.gst`, never here.
"""

from .images import image_strip_figure
from .inspector import brisque_sweep_figure
from .margins import (
    G_CAP_IN_S,
    MethodSpec,
    adaface_terms_figure,
    feature_plane_figure,
    feature_plane_grid,
    gst_curves_figure,
    method_spec,
    save_figure,
    static_image,
    target_logit_figure,
)
from .quality_eval import channel_order_figure, degradation_sweep_figure, edc_figure, fusion_figure, trend_figure
from .toy import toy_feature_figure, toy_gst_figure, toy_norm_figure
from .training import (
    FEATURE_LABELS,
    correlation_figure,
    margin_distribution_figure,
    norm_ema_figure,
    quality_scatter_figure,
    roc_figure,
    training_curves_figure,
    trajectory_figure,
    verification_bins_figure,
    z_hat_figure,
)

__all__ = [
    "G_CAP_IN_S",
    "MethodSpec",
    "adaface_terms_figure",
    "brisque_sweep_figure",
    "feature_plane_figure",
    "feature_plane_grid",
    "gst_curves_figure",
    "image_strip_figure",
    "method_spec",
    "save_figure",
    "static_image",
    "target_logit_figure",
    # training figures
    "FEATURE_LABELS",
    "correlation_figure",
    "margin_distribution_figure",
    "norm_ema_figure",
    "quality_scatter_figure",
    "roc_figure",
    "training_curves_figure",
    "trajectory_figure",
    "verification_bins_figure",
    "z_hat_figure",
    # quality-evaluation figures
    "edc_figure",
    "fusion_figure",
    "degradation_sweep_figure",
    "trend_figure",
    "channel_order_figure",
    # the toy trainer
    "toy_feature_figure",
    "toy_gst_figure",
    "toy_norm_figure",
]
