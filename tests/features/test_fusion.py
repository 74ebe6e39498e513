"""Feature fusion: parsing, the balancing rule (invariant to a block's dimension), the extractor and the pipeline."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import pdist

import brainclust
from brainclust.errors import NotFittedError, ParameterError
from brainclust.features.fusion import FusedExtractor, block_scales, fuse, is_fused, l2_normalize, parse_blocks
from brainclust.cluster.reduce import PCAReducer


def _blocks(n=30, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 5)) + 3.0          # offset, low-dimensional block
    b = rng.gamma(2.0, size=(n, 3)) * 100.0     # positive, large raw scale
    return a, b


def test_parse_blocks():
    assert is_fused("efficientnet_lite0+pixels") and not is_fused("pixels@64")
    assert parse_blocks("efficientnet_lite0+pixels@64") == [("efficientnet_lite0", 1.0), ("pixels@64", 1.0)]
    assert parse_blocks("hog*0.5+pixels*2") == [("hog", 0.5), ("pixels", 2.0)]


@pytest.mark.parametrize("name, match", [("pixels", "at least two"), ("pixels+", "cannot read"),
                                         ("auto+pixels", "explicitly"), ("hog*0+pixels", "must be > 0"),
                                         ("hog*x+pixels", "cannot read")])
def test_parse_blocks_errors(name, match):
    with pytest.raises(ParameterError, match=match):
        parse_blocks(name)


def test_each_block_gets_equal_total_variance():
    a, b = _blocks()
    s = block_scales([a, b])
    fused = fuse([a, b], s)
    va = fused[:, :5].var(axis=0).sum()
    vb = fused[:, 5:].var(axis=0).sum()
    np.testing.assert_allclose([va, vb], [1.0, 1.0], rtol=1e-10)
    # with user weights, total variance is the weight squared
    fused_w = fuse([a, b], block_scales([a, b], [2.0, 1.0]))
    np.testing.assert_allclose(fused_w[:, :5].var(axis=0).sum(), 4.0, rtol=1e-10)


@pytest.mark.parametrize("norm", ["image", "block"])
@pytest.mark.parametrize("repeat", [2, 7])
def test_fusion_is_invariant_to_a_blocks_dimension(repeat, norm):
    """Repeating a block's columns r times (r times the dimension, same information) changes nothing."""
    a, b = _blocks()
    b_big = np.tile(b, (1, repeat))
    f1 = fuse([a, b], block_scales([a, b], norm=norm), norm)
    f2 = fuse([a, b_big], block_scales([a, b_big], norm=norm), norm)
    # same Euclidean and cosine distances between images ...
    np.testing.assert_allclose(pdist(f1), pdist(f2), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pdist(f1, "cosine"), pdist(f2, "cosine"), rtol=1e-9, atol=1e-12)
    # ... hence the same PCA spectrum and the same embedding geometry
    p1, p2 = PCAReducer(4).fit(f1), PCAReducer(4).fit(f2)
    np.testing.assert_allclose(p1.transform(f1) @ p1.transform(f1).T, p2.transform(f2) @ p2.transform(f2).T,
                               rtol=1e-8, atol=1e-10)
    # the unbalanced concatenation would not be invariant: that is what the weighting fixes
    raw1, raw2 = np.hstack([a, b]), np.hstack([a, b_big])
    assert not np.allclose(pdist(raw1), pdist(raw2) / np.sqrt(repeat), rtol=1e-3)


def test_fusion_ignores_a_blocks_raw_scale():
    a, b = _blocks()
    f1 = fuse([a, b], block_scales([a, b]))
    f2 = fuse([a, 1e-3 * b], block_scales([a, 1e-3 * b]))
    np.testing.assert_allclose(f1, f2, rtol=1e-9)


def test_constant_block_is_left_out_with_a_warning(caplog):
    a, _ = _blocks()
    const = np.ones((len(a), 4))
    s = block_scales([a, const])
    assert s[1] == 0.0 and s[0] > 0
    assert "no variance" in caplog.text
    assert np.all(np.isfinite(fuse([a, const], s)))


def test_l2_normalize_keeps_zero_rows():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def _folder(tmp_path, make_image):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    for lab in ("a", "b"):
        for i in range(5):
            img = (rng.random((24, 24)) * 60).astype(np.uint8)
            if lab == "a":
                img[:, :12] += 150
            else:
                img[:12, :] += 150
            make_image(root / lab / f"{lab}{i}.png", img)
    return root


def test_fused_extractor_matches_the_blocks(tmp_path, make_image):
    from brainclust.features.extractor import FeatureExtractor

    root = _folder(tmp_path, make_image)
    paths = sorted(root.rglob("*.png"))
    cache = str(tmp_path / "cache")
    ex = FusedExtractor("pixels@16+hog@16*0.5", cache_dir=cache, num_workers=0, progress=False).fit(paths)
    F = ex.transform(paths)  # the scales were learned in fit; transform applies them
    assert F.shape == (10, 256 + 1764) and ex.spec_.dim == 256 + 1764
    assert ex.spec_.name == "pixels@16+hog@16*0.5" and ex.precision_ == "fp32"
    pix = FeatureExtractor("pixels@16", cache_dir=cache, num_workers=0, progress=False).fit().transform(paths)
    hog = FeatureExtractor("hog@16", cache_dir=cache, num_workers=0, progress=False).fit().transform(paths)
    np.testing.assert_allclose(ex.block_scales_, block_scales([pix, hog], [1.0, 0.5]))
    np.testing.assert_allclose(F, fuse([pix, hog], ex.block_scales_), rtol=1e-5, atol=1e-7)
    # every block has its own cache: the second extractor above hit it for all images
    again = FusedExtractor("pixels@16+hog@16*0.5", cache_dir=cache, num_workers=0, progress=False)
    again_got = again.fit_extract(paths)
    assert (again_got.cache_hits, again_got.cache_misses) == (20, 0)
    np.testing.assert_array_equal(again.block_scales_, ex.block_scales_)
    # fitted without images (and no fixed scales) it cannot transform: nothing is learned in transform
    with pytest.raises(NotFittedError, match="block scales"):
        FusedExtractor("pixels@16+hog@16*0.5", cache_dir=cache, num_workers=0, progress=False).fit().transform(paths)
    # fixed scales (as predict passes them) are used as given
    fixed = FusedExtractor("pixels@16+hog@16", cache_dir=cache, num_workers=0, progress=False,
                           block_scales=[1.0, 0.0]).fit()
    G = fixed.transform(paths)
    np.testing.assert_allclose(G[:, 256:], 0.0)
    np.testing.assert_allclose(np.linalg.norm(G, axis=1), 1.0, rtol=1e-5)


def test_fused_extractor_refuses_a_weights_file_and_bad_scales(tmp_path):
    with pytest.raises(ParameterError, match="--fusion-norm"):
        FusedExtractor("pixels@16+hog@16", norm="row").fit()
    with pytest.raises(ParameterError, match="--fusion-norm"):
        brainclust.RunConfig(backbone="pixels@16+hog@16", fusion_norm="row").validate()
    with pytest.raises(ParameterError, match="--weights"):
        FusedExtractor("efficientnet_lite0+pixels", weights=str(tmp_path / "w.pth")).fit()
    with pytest.raises(ParameterError, match="block_scales"):
        FusedExtractor("pixels@16+hog@16", block_scales=[1.0]).fit()


def test_block_norm_balances_variance_and_keeps_each_images_norm():
    a, b = _blocks()
    b = b * np.linspace(1, 5, len(b))[:, None]  # a block whose per-image norm carries information
    s = block_scales([a, b], norm="block")
    fused = fuse([a, b], s, "block")
    np.testing.assert_allclose([fused[:, :5].var(axis=0).sum(), fused[:, 5:].var(axis=0).sum()], [1.0, 1.0],
                               rtol=1e-10)
    np.testing.assert_allclose(fused[:, 5:], b * s[1])  # a plain rescaling: the norms' ratios survive
    per_image = fuse([a, b], block_scales([a, b]), "image")
    np.testing.assert_allclose(np.linalg.norm(per_image[:, 5:], axis=1).std(), 0.0, atol=1e-12)  # ... not here


def test_run_and_predict_with_a_fused_backbone(tmp_path, make_image):
    root = _folder(tmp_path, make_image)
    cache = str(tmp_path / "cache")
    res = brainclust.run(root, tmp_path / "out", backbone="pixels@16+hog@16", k=2, pca=5, workers=0,
                         labels_from_folders=True, cache_dir=cache)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["backbone"]["name"] == "pixels@16+hog@16"
    assert len(manifest["backbone"]["block_scales"]) == 2
    assert res.features.shape == (10, 256 + 1764)
    pred = brainclust.predict(tmp_path / "out", root, tmp_path / "pred", cache_dir=cache, workers=0)
    np.testing.assert_allclose(pred.extractor.block_scales_, manifest["backbone"]["block_scales"])
    np.testing.assert_allclose(pred.features, res.features, rtol=1e-6, atol=1e-7)
    assert pred.labels.tolist() == res.labels.tolist()
    # --fusion-norm block is recorded and reused by predict
    blk = brainclust.run(root, tmp_path / "out_b", backbone="pixels@16+hog@16", k=2, pca=5, workers=0,
                         labels_from_folders=True, cache_dir=cache, fusion_norm="block")
    info = json.loads((tmp_path / "out_b" / "manifest.json").read_text())["backbone"]
    assert info["fusion_norm"] == "block" and manifest["backbone"]["fusion_norm"] == "image"
    assert not np.allclose(blk.features, res.features)
    pred_b = brainclust.predict(tmp_path / "out_b", root, tmp_path / "pred_b", cache_dir=cache, workers=0)
    assert pred_b.extractor.norm == "block"
    np.testing.assert_allclose(pred_b.features, blk.features, rtol=1e-6, atol=1e-7)


def test_augmented_views_of_a_fusion_keep_the_plain_images_block_scales(tmp_path, make_image):
    from brainclust.selfsup import views as views_mod

    root = _folder(tmp_path, make_image)
    records = brainclust.scan(root).records
    ex = FusedExtractor("pixels@16+hog@16", cache_dir=str(tmp_path / "cache"), num_workers=0, progress=False)
    ex.fit(records)
    views = views_mod.extract(ex, records, ["identity", "rot90"])
    alone = FusedExtractor("pixels@16+hog@16", cache_dir=str(tmp_path / "cache"), num_workers=0, progress=False,
                           view="rot90")
    own = alone.fit_extract(records).features
    assert not np.allclose(alone.block_scales_, ex.block_scales_)  # a view alone would learn other scales
    expected = fuse([blk.transform(records) for blk, _ in alone.blocks_], ex.block_scales_)
    np.testing.assert_allclose(views["rot90"], expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(views["rot90"], own)
