"""The view's cache pruning deletes only thumbnails it wrote, oldest first (never a user's files)."""

from __future__ import annotations

import os

from brainclust.report.thumbcache import prune


def _file(path, size: int, mtime: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return path


def test_prune_deletes_only_old_thumbnails(tmp_path):
    thesis = _file(tmp_path / "docs" / "thesis.txt", 5000, 1e9)          # older and larger than any thumbnail
    backup = _file(tmp_path / "backup.img", 9000, 1e9)
    note = _file(tmp_path / "thumbs-abc" / "notes.txt", 4000, 1e9)       # not a thumbnail name
    deep = _file(tmp_path / "thumbs-abc" / "x" / "1-64.jpg", 4000, 1e9)  # not directly in a thumbs folder
    old = [_file(tmp_path / "thumbs-abc" / f"{i}-64.jpg", 1000, 2e9 + i) for i in range(4)]
    new = _file(tmp_path / "thumbs-def" / "0-128.jpg", 1000, 3e9)
    os.symlink(thesis, tmp_path / "thumbs-def" / "9-64.jpg")              # a link is never followed
    freed = prune(tmp_path, 2500)
    assert freed == 3000
    assert [p.exists() for p in old] == [False, False, False, True] and new.exists()
    assert thesis.exists() and backup.exists() and note.exists() and deep.exists()
    assert prune(tmp_path / "missing", 0) == 0


def test_a_passing_read_error_does_not_hide_an_image_until_it_changes(tmp_path, monkeypatch):
    """The hash of a file is remembered per version of it; a read error is not (EACCES, a network disk)."""
    from brainclust.errors import ImageReadError
    from brainclust.io import content
    from brainclust.report import thumbnails

    f = tmp_path / "a.png"
    f.write_bytes(b"the run's bytes")
    real, calls = content.content_sha256, []

    def flaky(path):
        calls.append(path)
        if len(calls) == 1:
            raise ImageReadError("cannot read file: Permission denied")
        return real(path)
    monkeypatch.setattr(content, "content_sha256", flaky)
    thumbnails._file_sha256.cache_clear()
    want = real(f)
    assert not thumbnails._is_recorded(str(f), want)  # the error: not shown this time
    assert thumbnails._is_recorded(str(f), want)  # read again, not the remembered error
    assert thumbnails._is_recorded(str(f), want) and len(calls) == 2  # a success is remembered
