"""Exact and near duplicates on planted folders: groups, representatives, duplicate_of."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageOps

from brainclust.checks import nearcode
from brainclust.checks.duplicates import group
from brainclust.checks.neighbors import exact_knn, knn
from brainclust.checks.stage import check_folder

from checks_planting import head_slice, jpeg_roundtrip, save


def by_path(result):
    return {p: (fl, d) for p, fl, d in zip(result.paths, result.flags, result.duplicate_of)}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("dups")
    for i in range(12):
        save(root / "a" / f"s{i:02d}.png", head_slice(i))
    src = Image.open(root / "a" / "s00.png")
    shutil.copyfile(root / "a" / "s01.png", root / "b" / "copy_s01.png") if (root / "b").exists() else \
        ((root / "b").mkdir(), shutil.copyfile(root / "a" / "s01.png", root / "b" / "copy_s01.png"))
    save(root / "b" / "rgb_s02.png", np.dstack([np.asarray(Image.open(root / "a" / "s02.png"))] * 3))  # same pixels
    save(root / "b" / "s03.jpg", Image.open(root / "a" / "s03.png"), quality=95)
    save(root / "b" / "s03_resaved.png", Image.open(root / "b" / "s03.jpg"))  # lossless re-save of the JPEG
    s4 = Image.open(root / "a" / "s04.png")
    save(root / "c" / "resized_s04.png", s4.resize((100, 100), Image.BILINEAR))
    save(root / "c" / "recompressed_s05.png", jpeg_roundtrip(Image.open(root / "a" / "s05.png"), 50))
    save(root / "c" / "hflip_s06.png", ImageOps.mirror(Image.open(root / "a" / "s06.png")))
    save(root / "c" / "vflip_s07.png", ImageOps.flip(Image.open(root / "a" / "s07.png")))
    a8 = np.asarray(Image.open(root / "a" / "s08.png"), np.float32)
    save(root / "c" / "brighter_s08.png", np.clip(a8 * 1.2 + 10, 0, 255).astype(np.uint8))
    s9 = Image.open(root / "a" / "s09.png")
    save(root / "c" / "crop_s09.png", s9.crop((5, 5, 155, 155)))
    del src
    return root


def test_exact_copies_and_lossless_resaves_are_duplicates_of_the_first(planted):
    r = by_path(check_folder(planted, progress=False))
    assert r["b/copy_s01.png"] == (frozenset({"duplicate"}), "a/s01.png")
    assert r["b/rgb_s02.png"] == (frozenset({"duplicate"}), "a/s02.png")  # RGB with equal channels = its grey file
    # a lossless re-save of the JPEG decodes to the JPEG's pixels: a duplicate of the JPEG, which is itself a near
    # duplicate of its PNG source
    assert r["b/s03_resaved.png"] == (frozenset({"duplicate"}), "b/s03.jpg")
    assert r["b/s03.jpg"] == (frozenset({"near_duplicate"}), "a/s03.png")
    assert r["a/s01.png"] == (frozenset(), "")  # the representative is never flagged


@pytest.mark.parametrize("name, source", [("c/resized_s04.png", "a/s04.png"), ("c/recompressed_s05.png", "a/s05.png"),
                                          ("c/hflip_s06.png", "a/s06.png"), ("c/vflip_s07.png", "a/s07.png"),
                                          ("c/brighter_s08.png", "a/s08.png"), ("c/crop_s09.png", "a/s09.png")])
def test_near_copies_are_near_duplicates_of_their_source(planted, name, source):
    r = by_path(check_folder(planted, progress=False))
    assert r[name] == (frozenset({"near_duplicate"}), source)


def test_distinct_slices_are_not_grouped(planted):
    res = check_folder(planted, progress=False)
    r = by_path(res)
    for i in (10, 11):
        assert r[f"a/s{i:02d}.png"] == (frozenset(), "")
    assert all(not fl & {"duplicate", "near_duplicate"} for p, (fl, _) in r.items() if p.startswith("a/"))
    groups = res.duplicates.groups()
    assert all(g == sorted(g) for g in groups) and len(groups) == 9


def test_group_joins_exact_and_near_pairs_with_the_first_as_representative():
    hashes = ["h0", "h1", "h0", "h2", "h3", "h4", "h4"]
    pairs = np.array([[1, 3], [3, 4], [4, 5]])
    g = group(hashes, pairs, np.array([0.99, 0.995, 0.99], np.float32))
    # 3 is a copy of head 1; 4 of 3 (a copy of a direct copy: still 1's group); 5 only of 4, three pairs away
    # from 1: it heads its own group (with its exact copy 6) rather than chain on
    assert g.representative.tolist() == [0, 1, 0, 1, 1, 5, 5]
    assert g.exact.tolist() == [False, False, True, False, False, False, True]
    assert g.near.tolist() == [False, False, False, True, True, False, False]
    assert g.groups() == [[0, 2], [1, 3, 4], [5, 6]]


def test_a_run_of_slices_each_like_the_next_makes_small_groups_not_one_chain():
    n = 40
    pairs = np.array([[i, i + 1] for i in range(n - 1)] + [[i, i + 2] for i in range(n - 2)])
    sims = np.array([0.995] * (n - 1) + [0.99] * (n - 2), np.float32)
    g = group([f"h{i}" for i in range(n)], pairs, sims)
    assert [len(m) for m in g.groups()] == [5] * 8  # union-find made one group of 40
    linked = {tuple(p) for p in pairs.tolist()}
    for i in np.flatnonzero(g.near):  # every member is at most two verified pairs from its head
        h = int(g.representative[i])
        assert (h, i) in linked or any((h, j) in linked and (j, i) in linked for j in range(h + 1, i))


def test_an_image_like_two_heads_joins_the_more_similar():
    g = group(["a", "b", "c"], np.array([[0, 2], [1, 2]]), np.array([0.99, 0.997], np.float32))
    assert g.representative.tolist() == [0, 1, 1]


def test_groups_are_every_representative_with_its_members_in_scan_order():
    rng = np.random.default_rng(0)
    n = 300
    hashes = [f"h{rng.integers(250)}" for _ in range(n)]
    pairs = np.sort(rng.integers(0, n, (60, 2)), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    g = group(hashes, pairs, np.full(len(pairs), 0.99, np.float32))
    expected: dict[int, list[int]] = {}
    for i, r in enumerate(g.representative):
        expected.setdefault(int(r), []).append(i)
    assert g.groups() == [m for _, m in sorted(expected.items()) if len(m) > 1]
    assert len(g.groups()) > 10


def test_codes_ignore_a_linear_intensity_change_and_follow_flips():
    t = head_slice(3)[::2, ::2][:64, :64].astype(np.float32)
    c = nearcode.codes(t[None])
    assert np.allclose(np.linalg.norm(c), 1, atol=1e-5)
    assert np.allclose(nearcode.codes((t * 0.5 + 30)[None]), c, atol=1e-4)
    for flip, seen in ((1, t[:, ::-1]), (2, t[::-1]), (3, t[::-1, ::-1])):  # a flip is a permutation of the code
        assert np.allclose(nearcode.flipped(c, flip), nearcode.codes(seen[None].copy()), atol=1e-6)
        assert np.allclose(nearcode.flipped(nearcode.codes(t[None], 0.04), flip),
                           nearcode.codes(seen[None].copy(), 0.04), atol=1e-6)
    assert not np.any(nearcode.codes(np.full((1, 64, 64), 7.0)))


def test_faiss_and_exact_search_find_the_same_near_neighbours():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x[1500:1600] = x[:100] + 0.01 * rng.normal(size=(100, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s_exact, i_exact = exact_knn(x, x, 2)
    s_ann, i_ann = knn(x, x, 2, backend="faiss")
    assert np.array_equal(i_exact[1500:1600, 1], np.arange(100))
    assert np.array_equal(i_ann[1500:1600, 1], np.arange(100))
    assert np.allclose(s_ann[:, 0], s_exact[:, 0], atol=1e-4)


def test_faiss_similarities_are_exact_inner_products_of_the_ids_returned():
    """The lists hold 8-bit codes; the similarities returned are re-scored on the float vectors."""
    from brainclust.checks.neighbors import FaissIndex

    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims, idx = FaissIndex(x).search(x[:500], 5)
    ok = idx >= 0
    assert ok[:, 0].all() and (idx[:, 0] == np.arange(500)).mean() > 0.99
    want = np.einsum("ij,ikj->ik", x[:500], x[np.maximum(idx, 0)])
    np.testing.assert_allclose(sims[ok], want[ok], rtol=0, atol=1e-5)
    assert (np.diff(np.where(ok, sims, -np.inf), axis=1) <= 1e-6).all()  # best first
    tiny_s, tiny_i = FaissIndex(x[:100]).search(x[:3], 150)  # more asked than the lists can hold
    assert tiny_i.shape == (3, 150) and (tiny_i[:, 100:] == -1).all() and np.isneginf(tiny_s[:, 100:]).all()


def test_faiss_search_of_identical_vectors_finds_them_and_refuses_nan():
    """All-identical vectors tie every list: the rows the index leaves short are searched exactly."""
    from brainclust.checks.neighbors import Searcher
    from brainclust.errors import ParameterError

    x = np.full((2000, 16), 0.25, np.float32)
    sims, idx = knn(x, x[:50], 8, exact_max=100)
    assert (idx >= 0).all() and np.allclose(sims, 1.0, atol=1e-5)
    assert (Searcher(x, exact_max=100).search(x[:5], 3000)[1][:, :2000] >= 0).all()  # k above n: all n found
    x[7, 3] = np.nan
    with pytest.raises(ParameterError, match="finite"):
        knn(x, x[:5], 8, exact_max=100)


def test_the_summary_says_when_near_duplicate_groups_are_chains(planted, tmp_path):
    base = head_slice(7).astype(np.float32)
    for k in range(6):  # one picture six times, each a little brighter: one group of six
        save(tmp_path / f"v{k}.png", np.clip(base * (1 + 0.04 * k) + 2 * k, 0, 255).astype(np.uint8))
    chain = check_folder(tmp_path, progress=False).summary()
    assert "5 near duplicates (groups of up to 6: neighbouring slices of one head match too)" in chain
    assert "groups of up to" not in check_folder(planted, progress=False).summary()  # pairs and one triple


def test_pair_similarity_is_the_best_over_every_flip_of_one_and_crop_of_either():
    """The stored-code scoring (flips as permutations, one image's codes shared by its pairs) against
    the definition, computed from flipped and cropped thumbnails one trial at a time."""
    rng = np.random.default_rng(3)
    base = head_slice(3)[::2, ::2][:64, :64].astype(np.float32)
    thumbs = np.stack([np.roll(base, (rng.integers(-3, 4), rng.integers(-3, 4)), (0, 1)) * rng.uniform(0.7, 1.2)
                       + rng.normal(0, 4, base.shape) for _ in range(8)])
    thumbs[4:] = thumbs[4:, ::-1]  # some pairs match best through a flip
    i, j = np.triu_indices(len(thumbs), 1)
    best, variant = nearcode.pair_similarity(thumbs, i, j)
    views = {0: lambda t: t, 1: lambda t: t[:, ::-1], 2: lambda t: t[::-1], 3: lambda t: t[::-1, ::-1]}
    for p, (a, b) in enumerate(zip(i, j)):
        trials = {}
        for flip, view in views.items():
            fa = view(thumbs[a]).copy()[None]
            for crop in nearcode.VERIFY_CROPS:
                pct = int(round(crop * 100))
                trials[flip * 100 + pct] = float(nearcode.codes(fa, crop)[0] @ nearcode.codes(thumbs[b][None])[0])
                trials[flip * 100 - pct] = float(nearcode.codes(fa)[0] @ nearcode.codes(thumbs[b][None], crop)[0])
        assert abs(best[p] - max(trials.values())) < 1e-5
        assert trials[int(variant[p])] > max(trials.values()) - 1e-5
    assert (variant // 100 > 0).any() and (variant % 100 != 0).any()  # flips and crops both won somewhere


def test_verifying_pairs_block_by_block_gives_each_pair_its_own_similarity():
    """``_verify`` reorders the images into blocks and the pairs by block pair; each pair keeps its own score."""
    from brainclust.checks.duplicates import _verify

    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 256, (60, 64, 64), dtype=np.uint8)
    thumbs[30:] = thumbs[:30] // 2 + rng.integers(0, 8, (30, 64, 64), dtype=np.uint8)  # near copies
    a = rng.integers(0, 60, 200)
    b = (a + rng.integers(1, 60, 200)) % 60
    cand = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1), axis=0)
    expected = nearcode.pair_similarity(thumbs, cand[:, 0], cand[:, 1])[0]
    np.testing.assert_allclose(_verify(thumbs, cand, block=7), expected, rtol=0, atol=1e-6)


def test_leakage_follows_every_verified_pair_across_splits_even_through_a_chain():
    """Groups are bounded (a member at most two pairs from its head), but leakage is about links: a chain
    train a-b-c, test d-e splits into two groups, yet the pair c-d crosses the splits and is listed."""
    from brainclust.checks.splits import leakage_rows

    g = group(list("abcde"), np.array([[0, 1], [1, 2], [2, 3], [3, 4]]), np.full(4, 0.99, np.float32))
    assert g.groups() == [[0, 1, 2], [3, 4]] and g.linked.tolist() == [0] * 5
    paths = ["train/a", "train/b", "train/c", "test/d", "test/e"]
    rows = leakage_rows(paths, ["train"] * 3 + ["test"] * 2, g.linked, g.exact, g.near)
    assert {r["path"] for r in rows} == set(paths) and {r["group"] for r in rows} == {"train/a"}


def _slices_and_copies(n: int = 40, seed: int = 5) -> np.ndarray:
    """64-px thumbnails: distinct head slices, and shifted, flipped, rescaled, noisy copies of some of them."""
    rng = np.random.default_rng(seed)
    heads = [head_slice(i)[::2, ::2][:64, :64].astype(np.float32) for i in range(n // 2)]
    copies = [np.roll(h, (rng.integers(-1, 2), rng.integers(-1, 2)), (0, 1))[:, ::-1 if k % 2 else 1]
              * rng.uniform(0.8, 1.2) + rng.normal(0, 1 + k % 3, h.shape) for k, h in enumerate(heads)]
    return np.clip(np.stack(heads + copies), 0, 255).astype(np.uint8)


def test_the_bounds_are_never_below_the_verified_similarity():
    """The filter may only drop pairs the verification would drop: the bound (float16 projections) plus its
    rounding room is at least the similarity, with the fitted basis and with any orthonormal one; and it is
    tight enough to drop most pairs of distinct slices."""
    from brainclust.checks import duplicates as D

    thumbs = _slices_and_copies()
    i, j = np.triu_indices(len(thumbs), 1)
    cand = np.stack([i, j], 1)
    true = nearcode.pair_similarity(thumbs, i, j)[0]
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(nearcode.SIDE ** 2, 16)))
    for basis in (None, q.astype(np.float32)):
        bound = D.upper_bounds(thumbs, cand, basis)
        assert (bound + D.BOUND_SLACK >= true).all()
    with pytest.raises(ValueError, match="orthonormal"):
        D.upper_bounds(thumbs, cand, 0.5 * q.astype(np.float32))
    bound = D.upper_bounds(thumbs, cand)
    copies = (j - i == len(thumbs) // 2)
    assert (true[copies] >= 0.95).mean() > 0.5  # the copies are near ones
    assert (bound[~copies] < 0.985 - D.BOUND_SLACK).mean() > 0.5


def same_pairs(a, b, threshold: float, tol: float = 1e-5) -> None:
    """Two near_pairs results hold the same pairs with the same similarities; only a pair within ``tol`` of the
    threshold may be in one and not the other (another CPU's kernels round its similarity the other way)."""
    sims = [dict(zip(map(tuple, pairs.tolist()), s.tolist())) for pairs, s in (a, b)]
    common = sims[0].keys() & sims[1].keys()
    for only in (sims[0].keys() - common, sims[1].keys() - common):
        assert all(abs(sims[i][p] - threshold) < tol for i in (0, 1) for p in only if p in sims[i]), only
    np.testing.assert_allclose([sims[0][p] for p in sorted(common)], [sims[1][p] for p in sorted(common)],
                               rtol=0, atol=1e-6)


def test_same_pairs_fails_on_a_pair_far_from_the_threshold():
    pairs = np.array([[0, 1], [2, 3]])
    same_pairs((pairs, np.array([0.99, 0.950001])), (pairs[:1], np.array([0.99])), 0.95)
    with pytest.raises(AssertionError):
        same_pairs((pairs, np.array([0.99, 0.97])), (pairs[:1], np.array([0.99])), 0.95)
    with pytest.raises(AssertionError):
        same_pairs((pairs, np.array([0.99, 0.97])), (pairs, np.array([0.99, 0.96])), 0.95)


def test_near_pairs_find_the_same_pairs_with_and_without_the_bound_filter(monkeypatch):
    from brainclust.checks import duplicates as D
    from brainclust.checks.flags import Thresholds

    thumbs = _slices_and_copies()
    rows = np.arange(len(thumbs))
    t = Thresholds(near_similarity=0.95)
    found = {}
    for on, per_image in (("off", 10 ** 9), ("on", 0)):
        monkeypatch.setattr(D, "BOUND_MIN_PAIRS_PER_IMAGE", per_image)
        found[on] = D.near_pairs(thumbs, rows, t, backend="exact", progress=False)
    assert len(found["on"][0]) >= 5
    same_pairs(found["on"], found["off"], t.near_similarity)
    # a threshold no candidate's bound reaches: nothing is verified, and nothing breaks
    pairs, sims = D.near_pairs(thumbs[:20], rows[:20], Thresholds(near_similarity=0.9999), backend="exact",
                               progress=False)
    assert pairs.shape == (0, 2) and sims.shape == (0,)
