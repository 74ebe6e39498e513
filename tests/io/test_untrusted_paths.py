"""Helpers for reading untrusted run folders: safe_join, walk_entries, and model files that are not ours."""

from __future__ import annotations

import os

import numpy as np
import pytest

from brainclust.errors import ModelFileError, UnsafePathError
from brainclust.io.atomic import atomic_write_npz, read_npz, safe_join, walk_entries


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "data"
    (r / "sub").mkdir(parents=True)
    (r / "sub" / "a.png").write_bytes(b"a")
    (r / "b.png").write_bytes(b"b")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", r / "leak.png")  # a link that leaves the root
    os.symlink(r / "b.png", r / "inside.png")  # a link that stays inside
    os.symlink(tmp_path, r / "up")  # a folder link to the parent
    return r


@pytest.mark.parametrize("rel", ["sub/a.png", "b.png", "inside.png", "./sub/a.png", "sub//a.png"])
def test_safe_join_accepts_paths_inside(root, rel):
    p = safe_join(root, rel)
    assert p.is_file() and root.resolve() in p.parents


@pytest.mark.parametrize("rel", ["../secret.txt", "sub/../../secret.txt", "/etc/passwd", "leak.png",
                                 "up/secret.txt", "", "a\x00b", "..", "sub/../.."])
def test_safe_join_refuses_paths_leaving_the_root(root, rel):
    with pytest.raises(UnsafePathError) as err:
        safe_join(root, rel)
    assert "\n" not in str(err.value) and "refused" in str(err.value)


def test_walk_entries_lists_every_depth_and_does_not_follow_links(root):
    (root / "sub" / "deeper").mkdir()
    (root / "sub" / "deeper" / "c.txt").write_text("c")
    assert walk_entries(root) == ["b.png", "inside.png", "leak.png", "sub", "sub/a.png", "sub/deeper",
                                  "sub/deeper/c.txt", "up"]


def test_a_model_file_linked_to_a_text_file_is_refused_in_our_words(tmp_path):
    good = atomic_write_npz(tmp_path / "pca.npz", mean=np.arange(3.0))
    np.testing.assert_array_equal(read_npz(good, "PCA model")["mean"], np.arange(3.0))
    (tmp_path / "text").write_text("root:x:0:0:root:/root:/bin/bash\n")
    link = tmp_path / "linked.npz"
    link.symlink_to(tmp_path / "text")
    for bad in (link, tmp_path / "text"):
        with pytest.raises(ModelFileError) as err:
            read_npz(bad, "PCA model")
        msg = str(err.value)
        assert "pickle" not in msg.lower() and "\n" not in msg and str(bad) in msg
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import zipfile

    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as z:
        z.write(tmp_path / "obj.npy", "x.npy")
    with pytest.raises(ModelFileError, match="Python objects, which are never loaded") as err:
        read_npz(tmp_path / "obj.npz", "cluster model")
    assert "allow_pickle" not in str(err.value)
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_npz(tmp_path, "cluster model")


def test_an_npz_declaring_more_than_it_holds_or_than_memory_is_refused_before_loading(tmp_path, monkeypatch):
    import io
    import zipfile

    import numpy as np

    from brainclust.errors import ModelFileError
    from brainclust.io import atomic

    bomb = tmp_path / "bomb.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 50)})
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("X_fit.npy", header.getvalue() + bytes(4096))
    with pytest.raises(ModelFileError, match="declares 400000000000 bytes but holds"):
        atomic.read_npz(bomb, "cluster model")
    fine = tmp_path / "fine.npz"
    np.savez(fine, X_fit=np.zeros((1000, 50)))
    assert atomic.read_npz(fine, "cluster model")["X_fit"].shape == (1000, 50)
    monkeypatch.setattr(atomic.os, "sysconf", lambda name: 1000 if name == "SC_PHYS_PAGES" else 64)  # 64 kB
    with pytest.raises(ModelFileError, match="more than half of this machine's memory"):
        atomic.read_npz(fine, "cluster model")


def test_a_compressed_npz_bomb_and_an_encrypted_member_are_damaged(tmp_path):
    import io
    import zipfile

    import numpy as np

    from brainclust.errors import ModelFileError
    from brainclust.io.atomic import read_npz

    bomb = tmp_path / "bomb.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros((64, 1024, 1024), np.uint8))  # 64 MiB of zeros, a few kB compressed
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("components.npy", buf.getvalue())
    with pytest.raises(ModelFileError, match="compressed"):
        read_npz(bomb, "PCA model")
    locked = tmp_path / "locked.npz"
    np.savez(locked, a=np.arange(3))
    raw = bytearray(locked.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # set the 'encrypted' bit in every header
        at = raw.find(sig)
        while at >= 0:
            flag = at + (6 if sig == b"PK\x03\x04" else 8)
            raw[flag] |= 1
            at = raw.find(sig, at + 4)
    locked.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="damaged"):
        read_npz(locked, "PCA model")
