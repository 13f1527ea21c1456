"""The store's chunks written as files, pre-encoded: the bytes zarr writes, file by file.

``itme.io._chunk_files`` writes the chunks of ``layers/raw`` and ``obs/_index`` past zarr's
array API; ``_store.PRE_ENCODED = False`` writes them through it (the fallback). Both must
give the same store, byte for byte, and fall back whenever the arrays are not what the
direct writes understand.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import dask
import numpy as np
import pandas as pd
import pytest
from helpers import fcs_factory
from numcodecs.vlen import VLenUTF8

import itme
from itme.io import _chunk_files, _store
from itme.io._chunk_files import ChunkFiles, chunk_files, encode_names
from itme.io._cohort import event_names

CHANNELS = ["Time", "Y89Di", "Nd142Di", "Nd145Di", "Ir191Di"]
ANTIGENS = ["", "CD45", "CD19", "CD4", "DNA1"]
PANEL = (
    "fcs_colname,antigen,marker_class\nTime,Time,none\nY89Di,CD45,type\nNd142Di,CD19,type\n"
    "Nd145Di,CD4,state\nIr191Di,DNA1,qc\n"
)
#: non-ASCII sample ids (UTF-8 of 1-3 bytes a character), one file spanning a chunk of 1000
FILES = {"S0": 50, "patient é 1": 1100, "患者-2": 30, "S.3": 7, "Ω4": 80, "S5": 1}


def make_cohort(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    rows = ["file_name,sample_id,patient_id"]
    for k, (sample_id, n) in enumerate(FILES.items()):
        x = rng.gamma(2.0, 30.0, size=(n, len(CHANNELS))).astype(np.float32)
        x[:, 0] = np.arange(n)
        fcs_factory.write(folder / f"s{k}.fcs", x, CHANNELS, labels=ANTIGENS)
        rows.append(f"s{k}.fcs,{sample_id},P{k // 2}")
    (folder / "samples.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "panel.csv").write_text(PANEL)
    return folder / "samples.csv", folder / "panel.csv"


def files_of(store: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(store)): f.read_bytes() for f in sorted(store.rglob("*")) if f.is_file()
    }


@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_chunk_files_are_the_bytes_zarr_writes(tmp_path, monkeypatch, chunk_rows):
    # 1268 events: shared chunks between files, a chunk spanning several files, a partial
    # last chunk (1268 = 181 x 7 + 1 = 1000 + 268)
    cohort = make_cohort(tmp_path)
    used = []
    writer = _store._writer
    monkeypatch.setattr(_store, "_writer", lambda path: used.append(writer(path)) or used[-1])
    stores = {}
    for direct in (True, False):
        monkeypatch.setattr(_store, "PRE_ENCODED", direct)
        stores[direct] = tmp_path / f"direct_{direct}.zarr"
        with dask.config.set(scheduler="threads", num_workers=3):
            itme.io.read_cohort(*cohort, store=stores[direct], chunk_rows=chunk_rows)
    kinds = {type(w).__name__ for w in used}
    assert kinds == {"ChunkFiles", "_ZarrChunks"}  # both paths were taken
    new, old = files_of(stores[True]), files_of(stores[False])
    assert sorted(new) == sorted(old)
    n = sum(FILES.values())
    chunks = -(-n // chunk_rows)
    assert sum(k.startswith("layers/raw/c/") for k in new) == chunks
    assert sum(k.startswith("obs/_index/c/") for k in new) == chunks
    differ = [k for k in new if new[k] != old[k]]
    assert differ == []
    # and what readers get from it
    names = [f"{sid}_{i}" for sid, count in FILES.items() for i in range(count)]
    plain = {d: ad.read_zarr(s) for d, s in stores.items()}
    assert list(plain[True].obs_names) == names == list(plain[False].obs_names)
    np.testing.assert_array_equal(plain[True].layers["raw"], plain[False].layers["raw"])
    opened = itme.io.open_store(stores[True])
    np.testing.assert_array_equal(opened.layers["raw"].compute(), plain[False].layers["raw"])
    pd.testing.assert_frame_equal(opened.obs, itme.io.open_store(stores[False]).obs)
    memory = itme.io.read_cohort(*cohort)
    assert list(memory.obs_names) == names
    np.testing.assert_array_equal(plain[True].layers["raw"], memory.layers["raw"])


@pytest.mark.parametrize(
    ("pieces", "items"),
    [
        ([("S0", 0, 7)], 7),
        ([("S0", 0, 3)], 7),  # a partial last chunk: padded with ""
        ([("é漢 x", 5, 20), ("b", 0, 3), ("", 95, 10)], 40),  # runs of 1, 2 and 3 digits
        ([("S", 999_990, 20)], 20),  # 6 and 7 digits: past the kept table's
        ([("S", 1_999_000, 2_000), ("é", 0, 3)], 2_010),  # the millions' digit changes
        ([("S", 9_999_998, 4)], 4),  # 7 and 8 digits
        ([("S", 12_345_678_900, 5)], 6),
        ([], 3),
    ],
)
def test_names_encoding_is_numcodecs_vlen_utf8(pieces, items):
    names = [event_names(sid, n, first=first) for sid, first, n in pieces]
    names.append(np.full(items - sum(p[2] for p in pieces), "", dtype=np.dtypes.StringDType()))
    expected = VLenUTF8().encode(np.concatenate(names))
    assert encode_names(pieces, items).tobytes() == bytes(expected)


def test_event_names_from_an_event(monkeypatch):
    from itme.io import _cohort

    monkeypatch.setattr(_cohort, "_KEPT_INDICES", 100)
    monkeypatch.setattr(_cohort, "_indices", np.empty(0, dtype=np.dtypes.StringDType()))
    for first, n in ((0, 5), (95, 10), (100, 3), (150, 0), (98, 2)):
        expected = [f"S_{i}" for i in range(first, first + n)]
        assert list(event_names("S", n, first=first)) == expected


def _skeleton(path: Path, rows: int = 20, step: int = 7) -> None:
    obs = pd.DataFrame(index=pd.RangeIndex(rows))
    var = pd.DataFrame(index=pd.Index(["a", "b"]))
    _store._write_skeleton(path, obs, var, step)


def test_chunk_files_only_for_the_skeletons_arrays(tmp_path, monkeypatch):
    # the store written by _write_skeleton: direct writes; any other array, zarr version or
    # names' encoding: None, and the conversion writes through zarr
    _skeleton(tmp_path / "a.zarr")
    path = str(tmp_path / "a.zarr")
    assert isinstance(chunk_files(path, _store._RAW, _store._NAMES), ChunkFiles)
    assert isinstance(_store._writer(path), ChunkFiles)
    monkeypatch.setattr(_store, "PRE_ENCODED", False)
    assert isinstance(_store._writer(path), _store._ZarrChunks)
    monkeypatch.undo()

    def edited(key: str, change) -> str:
        copy = tmp_path / f"edited{len(list(tmp_path.iterdir()))}.zarr"
        _skeleton(copy)
        meta_path = copy / key / "zarr.json"
        meta = json.loads(meta_path.read_text())
        change(meta)
        meta_path.write_text(json.dumps(meta))
        return str(copy)

    changes = [
        (_store._RAW, lambda m: m.update(codecs=[*m["codecs"], {"name": "zstd"}])),
        (_store._RAW, lambda m: m["codecs"][0]["configuration"].update(endian="big")),
        (_store._RAW, lambda m: m.update(data_type="float64")),
        (_store._RAW, lambda m: m.update(fill_value="NaN")),
        (_store._RAW, lambda m: m["chunk_key_encoding"].update(name="v2")),
        (_store._RAW, lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[7, 1])),
        (_store._NAMES, lambda m: m["codecs"].pop()),
        (_store._NAMES, lambda m: m["codecs"][1].update(name="gzip")),
        (_store._NAMES, lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[14])),
        (_store._NAMES, lambda m: m.update(fill_value="x")),
        (_store._NAMES, lambda m: m.update(storage_transformers=[{"name": "x"}])),
    ]
    for key, change in changes:
        assert chunk_files(edited(key, change), _store._RAW, _store._NAMES) is None
    assert chunk_files(str(tmp_path / "missing.zarr"), _store._RAW, _store._NAMES) is None
    monkeypatch.setattr(_chunk_files, "TESTED_ZARR", ((3, 0),))
    assert chunk_files(path, _store._RAW, _store._NAMES) is None
    monkeypatch.undo()
    monkeypatch.setattr(_chunk_files, "_checked", False)  # names' encoding not numcodecs'
    assert chunk_files(path, _store._RAW, _store._NAMES) is None


def test_chunk_files_zstd_configuration_is_the_arrays(tmp_path):
    # the names' zstd level and checksum come from zarr.json, as zarr's ZstdCodec takes them
    import zarr
    from zarr.codecs import ZstdCodec

    path = tmp_path / "z.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    values = np.arange(40, dtype=np.float32).reshape(20, 2)
    names = event_names("é", 20)
    for direct in (True, False):
        sub = group.require_group(str(direct))
        sub.create_array("raw", shape=(20, 2), chunks=(7, 2), dtype="float32", compressors=None)
        sub.create_array(
            "names",
            shape=(20,),
            chunks=(7,),
            dtype=str,
            compressors=ZstdCodec(level=5, checksum=True),
        )
        if direct:
            files = chunk_files(str(path), "True/raw", "True/names")
            assert files is not None
            for first in range(0, 20, 7):
                rows = values[first : first + 7]
                files.write(first, rows, [("é", first, len(rows))])
        else:
            sub["raw"].with_config({"write_empty_chunks": True})[:] = values
            sub["names"].with_config({"write_empty_chunks": True})[:] = names
    new, old = files_of(path / "True"), files_of(path / "False")
    assert sorted(new) == sorted(old) and all(new[k] == old[k] for k in new)
