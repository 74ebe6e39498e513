"""Tests for :mod:`brainclust.demo`."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from brainclust.data import demo
from brainclust.data.demo import make_demo_dataset
from brainclust.data.slices import orient

PLANES = ("axial", "coronal", "sagittal")
N_PER_CLASS = 6
SIZE = 64
NAME_RE = re.compile(r"(axial|coronal|sagittal)_(\d{4})(_lesion)?\.png")


def _files(root: pathlib.Path) -> dict[str, bytes]:
    """Map every file under ``root`` (relative POSIX path) to its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _load(root: pathlib.Path, plane: str) -> np.ndarray:
    """Stack all images of one plane as a float array (n, H, W)."""
    return np.stack(
        [np.asarray(Image.open(p), dtype=np.float64) for p in sorted((root / plane).glob("*.png"))]
    )


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    root = make_demo_dataset(str(out), n_per_class=N_PER_CLASS, size=SIZE, random_state=0)
    return root


def test_returns_path_and_folder_structure(demo_root: pathlib.Path) -> None:
    assert isinstance(demo_root, pathlib.Path)
    assert demo_root.name == "data"
    assert sorted(p.name for p in demo_root.iterdir()) == sorted(PLANES)
    assert all(p.is_dir() for p in demo_root.iterdir()), "no files at the root"
    for plane in PLANES:
        names = sorted(p.name for p in (demo_root / plane).iterdir())
        assert len(names) == N_PER_CLASS
        indices = []
        for name in names:
            match = NAME_RE.fullmatch(name)
            assert match is not None, name
            assert match.group(1) == plane
            indices.append(int(match.group(2)))
        assert sorted(indices) == list(range(N_PER_CLASS))


def test_image_mode_and_size(demo_root: pathlib.Path) -> None:
    paths = sorted(demo_root.rglob("*.png"))
    assert len(paths) == 3 * N_PER_CLASS
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.mode == "L"
            assert img.size == (SIZE, SIZE)


@pytest.mark.parametrize("n_per_class", [N_PER_CLASS, 5])
def test_exactly_half_have_lesions(tmp_path: pathlib.Path, n_per_class: int) -> None:
    root = make_demo_dataset(tmp_path, n_per_class=n_per_class, size=32, random_state=3)
    for plane in PLANES:
        names = [p.name for p in (root / plane).glob("*.png")]
        assert len(names) == n_per_class
        n_lesion = sum(name.endswith("_lesion.png") for name in names)
        assert n_lesion == n_per_class // 2


def test_lesion_pattern_varies_between_planes_or_seeds(tmp_path: pathlib.Path) -> None:
    # Lesion assignment is random (not a fixed alternating pattern).
    patterns = set()
    for seed in range(3):
        root = make_demo_dataset(tmp_path / str(seed), n_per_class=8, size=32, random_state=seed)
        for plane in PLANES:
            patterns.add(
                tuple(p.name.endswith("_lesion.png") for p in sorted((root / plane).glob("*.png")))
            )
    assert len(patterns) > 1


def test_deterministic_byte_identical(tmp_path: pathlib.Path, demo_root: pathlib.Path) -> None:
    other = make_demo_dataset(
        tmp_path / "again", n_per_class=N_PER_CLASS, size=SIZE, random_state=0
    )
    first, second = _files(demo_root), _files(other)
    assert first.keys() == second.keys()
    assert first == second


def test_different_seed_gives_different_images(
    tmp_path: pathlib.Path, demo_root: pathlib.Path
) -> None:
    other = make_demo_dataset(
        tmp_path / "seed1", n_per_class=N_PER_CLASS, size=SIZE, random_state=1
    )
    for plane in PLANES:
        a, b = _load(demo_root, plane), _load(other, plane)
        assert a.shape == b.shape
        # Every image differs (pose, slice position and noise are all random).
        per_image_diff = np.abs(a - b).mean(axis=(1, 2))
        assert np.all(per_image_diff > 1.0), per_image_diff


def test_images_are_not_blank(demo_root: pathlib.Path) -> None:
    for plane in PLANES:
        for image in _load(demo_root, plane):
            # Noise makes the background nonzero, so count clearly bright pixels.
            bright = (image > 50).mean()
            assert 0.15 < bright < 0.9, (plane, bright)
            assert image.max() > 120
            assert image.std() > 20


def test_images_vary_in_intensity(demo_root: pathlib.Path) -> None:
    images = np.concatenate([_load(demo_root, plane) for plane in PLANES])
    brain_means = [img[img > 50].mean() for img in images]
    assert np.ptp(brain_means) > 10


def test_planes_differ(demo_root: pathlib.Path) -> None:
    means = {plane: _load(demo_root, plane).mean(axis=0) for plane in PLANES}
    for i, a in enumerate(PLANES):
        for b in PLANES[i + 1 :]:
            assert np.abs(means[a] - means[b]).mean() > 5.0, (a, b)
    # Nearest-centroid on the per-plane mean images recovers most labels.
    correct = 0
    total = 0
    for plane in PLANES:
        for image in _load(demo_root, plane):
            dists = {p: np.abs(image - m).mean() for p, m in means.items()}
            correct += min(dists, key=dists.__getitem__) == plane
            total += 1
    assert correct / total > 0.8


def test_display_orientation() -> None:
    # In the clean oriented sagittal footprint, the frontal lobe (anterior) is on
    # the left and the cerebellum/brainstem (inferior, posterior) is bottom-right:
    # the lower-left quadrant (face region below frontal lobe) holds little brain.
    volume = demo._load_template()
    footprint = orient((volume > 0).any(axis=0))
    rows = np.flatnonzero(footprint.any(axis=1))
    cols = np.flatnonzero(footprint.any(axis=0))
    box = footprint[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    bh, bw = box.shape
    lower_left = box[bh // 2 :, : bw // 2].mean()
    lower_right = box[bh // 2 :, bw // 2 :].mean()
    assert lower_right > lower_left
    # Axial: anterior up -> brain is longer (rows) than wide (cols).
    axial = orient((volume > 0).any(axis=2))
    assert np.flatnonzero(axial.any(axis=1)).size > np.flatnonzero(axial.any(axis=0)).size
    # Coronal: superior up -> the narrow brainstem is at the bottom.
    coronal = orient((volume > 0).any(axis=1))
    rows = np.flatnonzero(coronal.any(axis=1))
    top_width = coronal[rows[0] + (rows[-1] - rows[0]) // 4].sum()
    bottom_width = coronal[rows[-1] - 5].sum()
    assert top_width > bottom_width


def test_lesion_inserted_exactly_for_lesion_files(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    original = demo._add_lesion

    def spy(image: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = original(image, brain, rng)
        calls.append(float(np.abs(out - image).max()))
        return out

    monkeypatch.setattr(demo, "_add_lesion", spy)
    make_demo_dataset(tmp_path, n_per_class=4, size=48, random_state=0)
    assert len(calls) == 3 * 2
    # Each lesion visibly changes the image (intensities are in [0, 1]).
    assert min(calls) > 0.1


@pytest.mark.parametrize("half_width", [3, 12])
def test_add_lesion_changes_only_inside_brain(half_width: int) -> None:
    # A small "brain" makes unmasked blobs spill over; a large one checks the
    # lesion lands on tissue.
    rng = np.random.default_rng(0)
    for _ in range(5):
        image = np.zeros((64, 64), dtype=np.float32)
        brain = np.zeros((64, 64), dtype=bool)
        brain[32 - half_width : 32 + half_width, 30 - half_width : 30 + half_width] = True
        image[brain] = 0.6
        out = demo._add_lesion(image, brain, rng)
        changed = np.abs(out - image) > 1e-3
        assert changed.any()
        assert not changed[~brain].any()


def test_regenerate_into_same_folder_removes_stale_images(tmp_path: pathlib.Path) -> None:
    root = make_demo_dataset(tmp_path, n_per_class=8, size=32, random_state=0)
    keep = root / "axial" / "notes.txt"
    keep.write_text("not a demo image")
    make_demo_dataset(tmp_path, n_per_class=4, size=32, random_state=1)
    for plane in PLANES:
        names = sorted(p.name for p in (root / plane).glob("*.png"))
        assert len(names) == 4
        assert sum(n.endswith("_lesion.png") for n in names) == 2
    assert keep.exists()
    assert not [p for p in root.rglob("*") if p.name.startswith(".")], "temp files left behind"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_per_class": 1}, "n_per_class"),
        ({"n_per_class": 0}, "n_per_class"),
        ({"size": 31}, "size"),
    ],
)
def test_invalid_arguments(tmp_path: pathlib.Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_demo_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_template_read_from_nilearn_package_without_network(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.find_spec("nilearn")
    assert spec is not None and spec.submodule_search_locations
    nilearn_dir = pathlib.Path(next(iter(spec.submodule_search_locations))).resolve()
    path = demo._template_path()
    assert path is not None
    assert nilearn_dir in path.resolve().parents

    def _no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    demo._load_template.cache_clear()
    try:
        root = make_demo_dataset(tmp_path, n_per_class=2, size=32)
    finally:
        demo._load_template.cache_clear()
    assert len(list(root.rglob("*.png"))) == 6


def test_module_does_not_import_torch() -> None:
    # Import the demo module the normal way: neither it nor what it imports may load torch.
    code = (
        "import sys\n"
        "import brainclust.data.demo as mod\n"
        "assert hasattr(mod, 'make_demo_dataset')\n"
        "print('torch' in sys.modules)\n"
    )
    env_path = [str(pathlib.Path(demo.__file__).resolve().parents[2])]
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": ":".join(env_path), "PATH": ""},
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("where", ["", "coronal"])
def test_an_out_dir_that_is_a_file_is_one_line(tmp_path, where):
    from brainclust.errors import ParameterError

    target = tmp_path / "out" / where if where else tmp_path / "out"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("not a folder")
    with pytest.raises(ParameterError, match=r"^out_dir: '.*' exists and is not a folder; choose another out_dir$"):
        make_demo_dataset(tmp_path / "out", n_per_class=2, size=32)  # was NotADirectoryError / FileExistsError
    assert not (tmp_path / "out" / "axial").exists() if where else target.read_text() == "not a folder"
