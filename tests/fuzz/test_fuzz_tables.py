"""Seeded byte-level mutations of every kind of input table and of the config: each reader
returns a result or raises an ItmeError, never another exception.

The tables are small, so the cases run in this process (a table reader allocates in
proportion to the file, which the mutations keep small). Sources: the test tables of
tests/unit/test_io_table_variants.py, the sample sheets of ../shared/data and the first lines
of its airway counts, and configs/demo.yaml.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import itme
from itme.errors import ItmeError
from itme.pipeline import load_config
from itme.rna import read_counts

ROOT = Path(__file__).resolve().parents[2]
SEED = 20_111
CASES_PER_READER = 150
# the base tables of tests/unit/test_io_table_variants.py
SHEET = "file_name,sample_id,patient_id,condition\ns0.fcs,S0,P0,A\ns1.fcs,S1,P1,B\ns2.fcs,S2,P2,A\n"
PANEL = "fcs_colname,antigen,marker_class\nY89Di,CD45,type\nNd142Di,CD19,type\nNd145Di,CD4,state\n"
CLINICAL = (
    "patient_id,disease_status,age,sex,os_months,os_event\n"
    "P1,NDMM,61,F,12.5,1\nP2,RMM,70,M,30.1,0\nP3,TRMM,55,F,8.0,1\nP4,NDMM,48,M,44.0,0\n"
)
CYTOKINES = "patient_id,IL-6,IL-10,TNF\nP1,4.5,1.2,10\nP2,3.1,OOR <,12\nP3,8.0,2.2,*30.5\n"
COUNTS = "gene_id\tgene_name\tR1\tR2\nG1\tA\t10\t20\nG2\tB\t0\t5\nG3\t\t7\t1\n"


def _sources(shared_data: Path) -> dict[str, tuple[object, str, list[bytes]]]:
    """reader name → (reader, file suffix, source files as bytes)."""
    bodenmiller = (
        shared_data / "bodenmiller2012_pbmc8_bcrxl_cytof/sample_table_bodenmiller_2012.csv"
    )
    tidytof = shared_data / "tidytof_cytof_examples/ddpr_metadata.csv"
    airway = shared_data / "airway_himes2014_counts/airway_cts.tsv"
    airway_head = b"".join(airway.read_bytes().splitlines(keepends=True)[:200])
    return {
        "samples": (
            itme.io.read_samples,
            ".csv",
            [SHEET.encode(), bodenmiller.read_bytes(), tidytof.read_bytes()],
        ),
        "panel": (itme.io.read_panel, ".csv", [PANEL.encode()]),
        "clinical": (itme.io.read_clinical, ".csv", [CLINICAL.encode()]),
        "cytokines": (itme.io.read_cytokines, ".csv", [CYTOKINES.encode()]),
        "counts": (read_counts, ".tsv", [COUNTS.encode(), airway_head]),
        "config": (load_config, ".yaml", [(ROOT / "configs" / "demo.yaml").read_bytes()]),
    }


def mutate(blob: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One seeded mutation of a text file."""
    kind = str(
        rng.choice(
            [
                "truncate",
                "flip",
                "insert",
                "drop_line",
                "repeat_line",
                "encode",
                "separator",
                "garbage",
            ]
        )
    )
    n = len(blob)
    if kind == "truncate":
        return blob[: int(rng.integers(0, n + 1))], kind
    if kind == "flip":
        buf = bytearray(blob)
        for _ in range(int(rng.integers(1, 8))):
            buf[int(rng.integers(0, n))] = int(rng.integers(0, 256))
        return bytes(buf), kind
    if kind == "insert":
        token = bytes(rng.choice([b",", b";", b"\t", b'"', b"\n", b"\r", b"\x00", b"\xff", b"NA", b"inf", b"-1", b"\xef\xbb\xbf", b"  ", b"#", b":", b"- ", b"{", b"[", b"*&a"]))  # fmt: skip
        at = int(rng.integers(0, n + 1))
        return blob[:at] + token * int(rng.integers(1, 4)) + blob[at:], kind
    lines = blob.splitlines(keepends=True)
    if kind == "drop_line" and len(lines) > 1:
        del lines[int(rng.integers(0, len(lines)))]
        return b"".join(lines), kind
    if kind == "repeat_line" and lines:
        i = int(rng.integers(0, len(lines)))
        lines.insert(i, lines[i])
        return b"".join(lines), kind
    if kind == "encode":
        text = blob.decode("utf-8", errors="replace")
        encoding = str(
            rng.choice(["utf-16", "utf-16-le", "utf-16-be", "latin-1", "cp1252", "utf-8-sig"])
        )
        return text.encode(encoding, errors="replace"), f"encode {encoding}"
    if kind == "separator":
        a, b = (
            bytes(x) for x in rng.choice([b",", b";", b"\t", b"|", b" "], size=2, replace=False)
        )
        return blob.replace(a, b), kind
    garbage = rng.integers(0, 256, size=int(rng.integers(1, 200))).astype(np.uint8).tobytes()
    return blob + garbage, "garbage"


@pytest.mark.shared_data
def test_mutated_tables_and_configs_read_or_raise_an_itme_error(shared_data, tmp_path):
    outcomes: dict[str, Counter] = {}
    others = []
    for name, (reader, suffix, blobs) in _sources(shared_data).items():
        counts = outcomes.setdefault(name, Counter())
        for case in range(CASES_PER_READER):
            rng = np.random.default_rng([SEED, case, len(name)])
            blob, kind = mutate(blobs[case % len(blobs)], rng)
            path = tmp_path / f"{name}{suffix}"
            path.write_bytes(blob)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    reader(path)
                    counts["read"] += 1
                except ItmeError:
                    counts["ItmeError"] += 1
                except Exception as exc:
                    counts["other"] += 1
                    others.append(f"{name} case {case} ({kind}): {type(exc).__name__}: {exc}")
    print("\n" + "\n".join(f"{k:<10} {dict(v)}" for k, v in outcomes.items()))
    assert not others, "\n".join(others[:20])
    for name, counts in outcomes.items():
        # both outcomes occur for every reader: the mutations are neither all fatal nor all harmless
        assert counts["read"] > 10 and counts["ItmeError"] > 10, (name, counts)


CONFIG = (ROOT / "configs" / "demo.yaml").read_text()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ((CONFIG + "\n# café\n").encode("latin-1"), "not UTF-8 text"),
        (CONFIG.encode("utf-16"), "not UTF-8 text"),
        (b"\x00\x01\x02\xff", "not UTF-8 text"),
        (b"- a\n- b\n", "a config is a mapping of sections: found list"),
        (b"42\n", "a config is a mapping of sections: found int"),
        (b"", "inputs is required"),
        (CONFIG.replace("  ", "\t").encode(), "not valid YAML"),
        (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid YAML"),
        (b"!!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
        ((CONFIG + "\nfoo: 1\n").encode(), "unknown key 'foo'"),
        (CONFIG.replace("seed", "se\x00ed").encode(), "not valid YAML"),
    ],
)
def test_config_variants_are_input_errors(tmp_path, content, match):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ItmeError, match=match):
        load_config(path)
