"""A run's held-out faces and every measure's EDC over all their pairs, checked against a pair-by-pair
recomputation; SER-FIQ along a degradation sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from adaface_lab.backbones import build_backbone
from adaface_lab.data.synthetic import SyntheticFaces
from adaface_lab.degrade import Degradation, degrade
from adaface_lab.quality_eval import (
    TRUTH,
    compare_edcs,
    degradation_sweep,
    edc,
    edc_pauc,
    heldout_faces,
    score_faces,
    serfiq,
)
from adaface_lab.runs import load_run
from tests.fake_runs import write_fake_checkpoint, write_fake_run
from tests.test_train import TINY_BACKBONE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("runs") / "tiny"
    write_fake_run(folder, epochs=2, n=40)
    write_fake_checkpoint(folder, holdout=4, images_per_identity=5)
    return load_run(folder)


def test_heldout_faces_are_the_identities_never_trained_on(run):
    faces = heldout_faces(run)
    held = SyntheticFaces(4, 5, size=112, seed=0, first_identity=6)  # identities 6..9 of the same generator
    assert len(faces) == faces.found == 20 and faces.n_identities == 4
    for i in (0, 7, 19):
        assert torch.equal(faces.images[i], held[i][0])
    np.testing.assert_allclose(faces.truth, 1.0 - held.severities)
    some = heldout_faces(run, max_images=8, seed=1)
    assert np.bincount(some.labels).tolist() == [2, 2, 2, 2]  # identities take turns


def test_compare_edcs_matches_a_pair_by_pair_recomputation(run):
    faces = heldout_faces(run)
    scored = score_faces(run.backbone(), faces, "rgb", measures=("norm", "serfiq"), passes=8, progress=False)
    assert list(scored.qualities.columns) == ["norm", "serfiq", TRUTH]
    found = compare_edcs(scored, measures=["norm", TRUTH], fmr=0.1, draws=30)
    e = scored.embeddings
    rows = [(float(e[i] @ e[j] / np.linalg.norm(e[i]) / np.linalg.norm(e[j])), faces.labels[i] == faces.labels[j], i, j)
            for i in range(len(e)) for j in range(i + 1, len(e))]  # fmt: skip
    s, y, a, b = (np.array(c) for c in zip(*rows))
    for m in ("norm", TRUTH):
        q = scored.qualities[m].to_numpy()
        expected = edc(s, y, q[a], q[b], fmr=0.1)
        np.testing.assert_allclose(found.tables[m]["fnmr"], expected["fnmr"], atol=1e-12)
        row = found.paucs.set_index("measure").loc[m]
        assert row["relative"] == pytest.approx(edc_pauc(expected, 0.2).relative)
    assert len(found.baseline.curves) == 30 and found.baseline.threshold == found.tables["norm"]["threshold"].iloc[0]
    with pytest.raises(ValueError, match="measures must be some of"):
        compare_edcs(scored, measures=["brisque"])


def test_a_run_without_held_out_identities_says_so(tmp_path: Path):
    write_fake_run(tmp_path / "r", epochs=1, n=10, unscored=2)
    write_fake_checkpoint(tmp_path / "r", holdout=0)
    with pytest.raises(ValueError, match="held out 0 identities"):
        heldout_faces(load_run(tmp_path / "r"))


def test_serfiq_along_the_sweep_is_serfiq_of_each_degraded_face():
    torch.manual_seed(0)
    model = build_backbone("ir_tiny", **TINY_BACKBONE).eval()
    faces = torch.stack([SyntheticFaces(2, 1, size=112).render(c, 0, severity=0.0) for c in range(2)])
    sweep = degradation_sweep(model, faces, "rgb", levels={"noise_sigma": (0.0, 10.0, 40.0)},
                              measures=("norm", "serfiq"), passes=6, progress=False)  # fmt: skip
    at_40 = sweep[sweep["step"] == 2].sort_values("image")
    noisy = degrade(faces, Degradation(noise_sigma=40.0))
    np.testing.assert_allclose(at_40["serfiq"], serfiq(model, noisy, "rgb", passes=6, progress=False))
