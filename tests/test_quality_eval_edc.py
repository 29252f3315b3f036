"""EDC and pAUC against brute-force loops written here, a hand-computed case, and the random baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaface_lab.quality_eval import edc, edc_pauc, edc_tables, fmr_threshold, pauc_table, random_edc

# --------------------------------------------------------------------------- independent brute force


def brute_threshold(scores, issame, fmr):
    """Lowest observed score t with (#impostors scoring >= t) / #impostors <= fmr, by trying each one."""
    impostor = [s for s, g in zip(scores, issame) if not g]
    for t in sorted(set(scores)):
        if sum(1 for s in impostor if s >= t) / len(impostor) <= fmr:
            return t
    return math.inf


def n_discarded(d, n):
    return math.floor(round(d * n, 6))  # d·N, with d read as the decimal it was written as


def brute_edc_distinct(scores, issame, qa, qb, fmr, discard):
    """Distinct pair qualities: sort pairs by quality, drop the first m, count on the rest."""
    t = brute_threshold(scores, issame, fmr)
    pq = [min(a, b) for a, b in zip(qa, qb)]
    by_quality = sorted(range(len(scores)), key=lambda i: pq[i])
    out = []
    for d in discard:
        kept = by_quality[n_discarded(d, len(scores)):]
        genuine = [i for i in kept if issame[i]]
        misses = [i for i in genuine if scores[i] < t]
        out.append(len(misses) / len(genuine) if genuine else math.nan)
    return t, out


def brute_edc_shared_ties(scores, issame, qa, qb, fmr, discard):
    """Tied qualities: walk the quality levels upwards; the level where the cut falls loses r/g of each pair."""
    t = brute_threshold(scores, issame, fmr)
    n = len(scores)
    pq = [min(a, b) for a, b in zip(qa, qb)]
    out = []
    for d in discard:
        to_remove = n_discarded(d, n)
        weight = [1.0] * n
        for level in sorted(set(pq)):
            if to_remove == 0:
                break
            members = [i for i in range(n) if pq[i] == level]
            share = min(1.0, to_remove / len(members))
            for i in members:
                weight[i] = 1.0 - share
            to_remove -= min(to_remove, len(members))
        genuine = sum(weight[i] for i in range(n) if issame[i])
        misses = sum(weight[i] for i in range(n) if issame[i] and scores[i] < t)
        out.append(misses / genuine if genuine > 1e-12 else math.nan)
    return t, out


def brute_pauc(discard, fnmr, limit):
    xs, ys = [], []
    for i, (x, y) in enumerate(zip(discard, fnmr)):
        if x < limit:
            xs.append(x)
            ys.append(y)
        else:
            if x > limit:  # interpolate at the limit between the previous point and this one
                x0, y0 = discard[i - 1], fnmr[i - 1]
                y = y0 + (limit - x0) / (x - x0) * (y - y0)
            xs.append(limit)
            ys.append(y)
            break
    return sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))


def generated_pairs(n, seed, tied=False):
    """Scores where low quality pulls genuine scores down; qualities continuous or on 5 levels."""
    rng = np.random.default_rng(seed)
    issame = rng.random(n) < 0.5
    qa, qb = rng.random(n), rng.random(n)
    if tied:
        qa, qb = rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n).astype(float)
    q = np.minimum(qa, qb) / (4.0 if tied else 1.0)
    scores = np.where(issame, 0.3 + 0.4 * q, 0.1) + rng.normal(0, 0.12, n)
    return scores, issame, qa, qb


DISCARD = np.arange(41) / 100  # 0 .. 0.40


# --------------------------------------------------------------------------- EDC


@pytest.mark.parametrize("fmr", [0.01, 0.05, 0.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_edc_matches_brute_force_with_distinct_qualities(fmr, seed):
    s, y, qa, qb = generated_pairs(300, seed)
    table = edc(s, y, qa, qb, fmr=fmr, discard=DISCARD)
    t, fnmr = brute_edc_distinct(s.tolist(), y.tolist(), qa.tolist(), qb.tolist(), fmr, DISCARD)
    assert (table["threshold"] == t).all()
    np.testing.assert_allclose(table["fnmr"], fnmr, rtol=0, atol=1e-12, equal_nan=True)
    assert table["kept"].tolist() == [300 - n_discarded(d, 300) for d in DISCARD]


@pytest.mark.parametrize("fmr", [0.02, 0.1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edc_matches_brute_force_with_tied_qualities(fmr, seed):
    s, y, qa, qb = generated_pairs(250, seed, tied=True)
    table = edc(s, y, qa, qb, fmr=fmr, discard=DISCARD)
    t, fnmr = brute_edc_shared_ties(s.tolist(), y.tolist(), qa.tolist(), qb.tolist(), fmr, DISCARD)
    assert (table["threshold"] == t).all()
    np.testing.assert_allclose(table["fnmr"], fnmr, rtol=0, atol=1e-12, equal_nan=True)


def test_edc_by_hand():
    # impostors 0.1..0.5; FMR <= 0.2 allows one impostor at or above t, so t = 0.5 (the lowest score above 0.4).
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.15, 0.35, 0.6, 0.7, 0.9]
    issame = [False] * 5 + [True] * 5
    quality = [1, 1, 1, 1, 1, 0.1, 0.2, 0.3, 0.4, 0.5]
    table = edc(scores, issame, quality, quality, fmr=0.2, discard=[0.0, 0.1, 0.2])
    assert table["threshold"].tolist() == [0.5] * 3
    assert table["fnmr"].tolist() == pytest.approx([2 / 5, 1 / 4, 0 / 3])  # 0.15 and 0.35 miss; they go first
    assert table["kept"].tolist() == [10, 9, 8]
    assert table.attrs["fmr_actual"] == pytest.approx(0.2)
    # A tie between the missed 0.15 and the matched 0.6: discarding one pair removes half of each.
    quality[7] = 0.1
    tied = edc(scores, issame, quality, quality, fmr=0.2, discard=[0.1])
    assert tied["fnmr"].iloc[0] == pytest.approx((2 - 0.5) / (5 - 1))
    assert tied["genuine_kept"].iloc[0] == pytest.approx(4.0)


def test_pair_quality_is_the_worse_image():
    s, y, qa, qb = generated_pairs(200, 3)
    both = edc(s, y, qa, qb, discard=DISCARD)
    pq = np.minimum(qa, qb)
    assert both["fnmr"].equals(edc(s, y, pq, pq, discard=DISCARD)["fnmr"])
    assert both["fnmr"].equals(edc(s, y, qb, qa, discard=DISCARD)["fnmr"])


def test_pair_order_does_not_change_the_edc_even_with_ties():
    s, y, qa, qb = generated_pairs(400, 4, tied=True)
    perm = np.random.default_rng(9).permutation(len(s))
    a = edc(s, y, qa, qb, discard=DISCARD)["fnmr"].to_numpy()
    b = edc(s[perm], y[perm], qa[perm], qb[perm], discard=DISCARD)["fnmr"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_constant_quality_is_exactly_the_random_baseline():
    s, y, _, _ = generated_pairs(500, 5)
    table = edc(s, y, np.ones(500), np.ones(500))
    np.testing.assert_allclose(table["fnmr"], table["fnmr"].iloc[0], rtol=1e-12)
    assert edc_pauc(table, 0.2).relative == pytest.approx(1.0)


def test_a_decimal_fraction_discards_what_it_says():
    s, y, qa, qb = generated_pairs(100, 6)
    assert edc(s, y, qa, qb, fmr=0.1, discard=[0.29, 0.57])["kept"].tolist() == [71, 43]  # 0.29·100 = 28.999... in floats


def test_threshold_by_brute_force_on_tied_scores():
    rng = np.random.default_rng(7)
    s = rng.integers(0, 20, 400) / 20.0  # many tied scores
    y = rng.random(400) < 0.5
    for fmr in (0.01, 0.1, 0.25, 0.5):
        assert fmr_threshold(s, y, fmr) == brute_threshold(s.tolist(), y.tolist(), fmr)


def test_unreachable_fmr_gives_infinite_threshold_and_fnmr_one():
    # Two impostors, the top score is one of them: any observed threshold admits it (FMR 1/2 > 0.34).
    scores = [0.9, 0.1, 0.2, 0.3]
    issame = [False, True, True, False]
    with pytest.warns(RuntimeWarning, match="cannot resolve FMR"):
        table = edc(scores, issame, [1, 1, 1, 1], [1, 1, 1, 1], fmr=0.34, discard=[0.0])
    assert table["threshold"].iloc[0] == math.inf == brute_threshold(scores, issame, 0.34)
    assert table["fnmr"].iloc[0] == 1.0


def test_too_few_impostors_for_the_fmr_warns():
    s, y, qa, qb = generated_pairs(60, 8)
    with pytest.warns(RuntimeWarning, match="cannot resolve FMR"):
        table = edc(s, y, qa, qb, fmr=0.001)
    assert table.attrs["fmr_actual"] == 0.0


def test_edc_tables_reads_per_image_qualities_through_the_pairs():
    rng = np.random.default_rng(10)
    n_img, n_pairs = 50, 300
    q_img = rng.random(n_img)
    pairs = rng.integers(0, n_img, (n_pairs, 2))
    y = rng.random(n_pairs) < 0.5
    s = np.where(y, 0.5, 0.1) + rng.normal(0, 0.2, n_pairs)
    tables = edc_tables(s, y, {"q": q_img}, pairs=pairs, discard=DISCARD)
    direct = edc(s, y, q_img[pairs[:, 0]], q_img[pairs[:, 1]], discard=DISCARD)
    assert tables["q"].equals(direct)


# --------------------------------------------------------------------------- pAUC and the baseline


@pytest.mark.parametrize("limit", [0.2, 0.155, 0.4])
@pytest.mark.parametrize("tied", [False, True])
def test_pauc_matches_brute_force(limit, tied):
    s, y, qa, qb = generated_pairs(300, 11, tied=tied)
    table = edc(s, y, qa, qb, discard=DISCARD)
    a = edc_pauc(table, limit)
    expected = brute_pauc(DISCARD.tolist(), table["fnmr"].tolist(), limit)
    assert a.value == pytest.approx(expected, abs=1e-12)
    assert a.random == pytest.approx(table["fnmr"].iloc[0] * limit)
    assert a.relative == pytest.approx(expected / (table["fnmr"].iloc[0] * limit))


def test_random_baseline_centres_on_fnmr_at_zero_and_an_informative_quality_leaves_its_band():
    s, y, qa, qb = generated_pairs(4000, 12)
    base = random_edc(s, y, draws=100, seed=0, discard=DISCARD)
    fnmr0 = edc(s, y, qa, qb, discard=DISCARD)["fnmr"].iloc[0]
    areas = base.pauc(0.2)
    assert abs(areas.mean() - fnmr0 * 0.2) < 3 * areas.std(ddof=1) / math.sqrt(len(areas))
    band = base.table
    assert (band["fnmr_low"] <= band["fnmr"] + 1e-12).all() and (band["fnmr"] <= band["fnmr_high"] + 1e-12).all()
    good = edc(s, y, qa, qb, discard=DISCARD)
    reversed_ = edc(s, y, -qa, -qb, discard=DISCARD)  # the quality read with its sign flipped
    table = pauc_table({"quality": good, "reversed": reversed_}, 0.2, baseline=base).set_index("measure")
    assert table.loc["quality", "beyond_random"] and table.loc["quality", "relative"] < 1.0
    assert table.loc["reversed", "relative"] > table.loc["reversed", "random_high"]
    assert table.index[0] == "quality"  # best first


def test_random_baseline_is_seeded():
    s, y, _, _ = generated_pairs(500, 13)
    a, b = random_edc(s, y, draws=5, seed=3), random_edc(s, y, draws=5, seed=3)
    np.testing.assert_array_equal(a.curves, b.curves)
    assert not np.array_equal(a.curves, random_edc(s, y, draws=5, seed=4).curves)


def _all_pairs(n_images: int, n_ids: int, seed: int):
    """Every pair of ``n_images`` images of ``n_ids`` identities; about one image in ten is unrecognisable
    (quality 0: its genuine pairs score like impostors), so the false non-matches cluster on a few images."""
    rng = np.random.default_rng(seed)
    labels, q = np.arange(n_images) % n_ids, (rng.random(n_images) > 0.1).astype(float)
    a, b = np.triu_indices(n_images, k=1)
    issame = labels[a] == labels[b]
    scores = np.where(issame, 0.15 + 0.5 * np.minimum(q[a], q[b]), 0.1) + rng.normal(0, 0.1, len(a))
    return scores, issame, np.stack([a, b], axis=1), q


def test_random_baseline_per_image_draws_one_quality_per_image_and_is_wider_when_pairs_share_images():
    s, y, pairs, q = _all_pairs(120, 12, 15)
    base = random_edc(s, y, draws=60, seed=4, discard=DISCARD, pairs=pairs)
    rng = np.random.default_rng(4)  # the same stream, drawn by hand: one uniform per image, pair = the lower
    for k in range(3):
        qi = rng.random(120)
        np.testing.assert_allclose(base.curves[k], edc(s, y, qi[pairs[:, 0]], qi[pairs[:, 1]], discard=DISCARD)["fnmr"])
    per_pair = random_edc(s, y, draws=60, seed=4, discard=DISCARD)
    # discarding an image drops its 119 pairs at once, with all their false non-matches: the areas spread more
    assert base.pauc(0.2).std() > 1.5 * per_pair.pauc(0.2).std()
    fnmr0 = edc(s, y, q[pairs[:, 0]], q[pairs[:, 1]], discard=DISCARD)["fnmr"].iloc[0]
    areas = base.pauc(0.2)
    assert abs(areas.mean() - fnmr0 * 0.2) < 3 * areas.std(ddof=1) / math.sqrt(len(areas))  # still centred
    with pytest.raises(ValueError, match=r"pairs must be \(7140, 2\) integer image indices"):
        random_edc(s, y, pairs=pairs[:-1])
    with pytest.raises(ValueError, match="negative image indices"):
        random_edc(s, y, pairs=pairs - 1)


# --------------------------------------------------------------------------- bad input


def test_bad_input_each_gives_one_clear_error():
    s, y, qa, qb = generated_pairs(100, 14)
    with pytest.raises(ValueError, match="one value per pair; got lengths \\[100, 100, 99, 100\\]"):
        edc(s, y, qa[:-1], qb)
    with pytest.raises(ValueError, match="one value per pair"):
        edc(s[:-1], y, qa, qb)
    with pytest.raises(ValueError, match="genuine and impostor pairs.*100 genuine and 0 impostor"):
        edc(s, np.ones(100, bool), qa, qb)
    with pytest.raises(ValueError, match="0 genuine and 100 impostor"):
        edc(s, np.zeros(100, bool), qa, qb)
    bad = qa.copy()
    bad[[3, 7]] = np.nan
    with pytest.raises(ValueError, match="quality_a holds 2 NaN"):
        edc(s, y, bad, qb)
    with pytest.raises(ValueError, match="quality_b holds 2 NaN"):
        edc(s, y, qa, bad)
    for fmr in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fmr must be a number in \\(0, 1\\)"):
            edc(s, y, qa, qb, fmr=fmr)
    with pytest.raises(ValueError, match="discard fractions must lie in \\[0, 1\\]"):
        edc(s, y, qa, qb, discard=[0.0, 1.2])
    with pytest.raises(ValueError, match="scores must be finite"):
        edc(np.r_[np.nan, s[1:]], y, qa, qb)


def test_bad_pauc_input():
    s, y, qa, qb = generated_pairs(100, 15)
    table = edc(s, y, qa, qb, fmr=0.1, discard=[0.0, 0.1])
    with pytest.raises(ValueError, match="stops at discard = 0.1, before limit = 0.2"):
        edc_pauc(table, 0.2)
    with pytest.raises(ValueError, match="must start at discard = 0"):
        edc_pauc(edc(s, y, qa, qb, fmr=0.1, discard=[0.05, 0.3]), 0.2)
    with pytest.raises(ValueError, match="limit must be in \\(0, 1\\]"):
        edc_pauc(table, 0.0)
    with pytest.raises(ValueError, match="lacks the columns"):
        edc_pauc(table.drop(columns="fnmr"))
