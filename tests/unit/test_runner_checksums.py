"""The run's input checksums: hashed on threads, cached by (size, mtime)."""

from __future__ import annotations

import hashlib
import os

from itme.pipeline import _runner


def test_input_checksums_are_hashed_at_once_and_cached_until_a_file_changes(tmp_path, monkeypatch):
    files = []
    for i in range(5):
        path = tmp_path / f"f{i}.fcs"
        path.write_bytes(os.urandom(100_000 + i))
        files.append(path)
    hashed = []
    sha256 = _runner.sha256
    monkeypatch.setattr(_runner, "sha256", lambda p: hashed.append(p) or sha256(p))
    checksums = _runner._Checksums(tmp_path / "checksums.json")
    expected = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert checksums.many([*files, files[0]]) == expected  # a file listed twice: hashed once
    assert sorted(hashed) == sorted(files)
    checksums.save()
    again = _runner._Checksums(tmp_path / "checksums.json")  # the next run: from the cache
    files[2].write_bytes(b"changed")
    expected[str(files[2])] = hashlib.sha256(b"changed").hexdigest()
    hashed.clear()
    assert again.many(files) == expected
    assert hashed == [files[2]]  # only the changed file is hashed again
