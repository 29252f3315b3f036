"""The feature norm as a quality score, judged as face-quality research judges one (DESIGN.md §6).

- :mod:`.edc` — the error-versus-discard characteristic (ISO/IEC 29794-5 style), its partial area
  and the random-quality baseline;
- :mod:`.measures` — quality per image: the feature norm, BRISQUE at 112 px, SER-FIQ, random;
- :mod:`.serfiq` — SER-FIQ (Terhörst et al., CVPR 2020) from the IResNet's output dropout;
- :mod:`.fusion` — templates of k images fused by mean, norm or quality; set-to-set TAR@FAR;
- :mod:`.heldout` — a run's held-out faces rated by every measure, and their EDCs over every pair;
- :mod:`.checkup` — before trusting a model's norm as quality on your faces: its trend along a degradation
  sweep (with BRISQUE's beside it), with bootstrap intervals and verdicts, and a channel-order check.

::

    from adaface_lab.quality_eval import edc_tables, image_qualities, pauc_table, random_edc

    q = image_qualities(backbone, images, "rgb", measures=("norm", "brisque", "serfiq"))   # (N, 3)
    tables = edc_tables(scores, issame, q, pairs=pair_index, fmr=0.01)   # pair_index (P, 2) into images
    pauc_table(tables, limit=0.2, baseline=random_edc(scores, issame))

    result = checkup(backbone, load_faces("faces/", max_images=200), channel_order="bgr")
    print(result.summary())                                             # `adaface-lab checkup` in a call

Figures: :func:`adaface_lab.plots.edc_figure`, :func:`~adaface_lab.plots.fusion_figure`, and the check-up's
:func:`~adaface_lab.plots.degradation_sweep_figure`, :func:`~adaface_lab.plots.trend_figure`,
:func:`~adaface_lab.plots.channel_order_figure`.
"""

from .checkup import (
    CHECKUP_MEASURES,
    SWEEP_LEVELS,
    SWEEP_MEASURES,
    ChannelOrderCheck,
    Checkup,
    Faces,
    channel_order_check,
    checkup,
    degradation_sweep,
    find_faces,
    image_trends,
    load_faces,
    sweep_bands,
    trend_summary,
    trend_verdict,
)
from .checkup import __all__ as _CHECKUP_NAMES
from .edc import (
    DEFAULT_DISCARD,
    PAUC,
    RandomBaseline,
    edc,
    edc_pauc,
    edc_tables,
    fmr_threshold,
    pair_quality,
    pauc_table,
    random_edc,
)
from .heldout import TRUTH, EDCComparison, ScoredFaces, compare_edcs, heldout_faces, score_faces
from .fusion import Templates, all_pairs, fuse_templates, fusion_table, make_templates, template_verification
from .measures import BRISQUE_SIZE, MEASURES, brisque_quality, image_qualities, norm_quality
from .serfiq import dropout_masks, serfiq, serfiq_from_embeddings, split_at_dropout, stochastic_embeddings

__all__ = [
    "BRISQUE_SIZE",
    "DEFAULT_DISCARD",
    "MEASURES",
    "PAUC",
    "RandomBaseline",
    "EDCComparison",
    "ScoredFaces",
    "TRUTH",
    "Templates",
    "compare_edcs",
    "heldout_faces",
    "score_faces",
    "all_pairs",
    "brisque_quality",
    "dropout_masks",
    "edc",
    "edc_pauc",
    "edc_tables",
    "fmr_threshold",
    "fuse_templates",
    "fusion_table",
    "image_qualities",
    "make_templates",
    "norm_quality",
    "pair_quality",
    "pauc_table",
    "random_edc",
    "serfiq",
    "serfiq_from_embeddings",
    "split_at_dropout",
    "stochastic_embeddings",
    "template_verification",
    *_CHECKUP_NAMES,  # the check-up's names, imported above
]
