"""itme.report.write_report: a self-contained, escaped, deterministic HTML page of a run."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itme.errors import ItmeInputError, ItmeInputWarning, ItmeParameterError
from itme.report._html import write_report
from itme.report._tables import fmt_p

HEADINGS = [
    "Overview",
    "QC accounting",
    "Batch effects",
    "Cluster phenotypes",
    "iTME clusters and robustness",
    "Subset statistics",
    "Differential abundance and state",
    "Clinical table",
    "Survival",
    "Differential expression and GSEA",
    "Cytokines",
    "Provenance",
]
STAGES = ["ingest", "clean", "cluster", "annotate", "abundance", "patients", "stats", "rnaseq"]
SVG = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" viewBox="0 0 40 20">'
    '<rect width="40" height="20" fill="#2b5fa8"/></svg>\n'
)


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.5, 1.0), dpi=40)
    ax.plot([0, 1, 2], [2, 0, 1])
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def _run_json(statuses: dict[str, str] | None = None) -> dict:
    statuses = statuses or {}
    return {
        "itme_version": "0.1.0",
        "started": "2024-05-01T10:00:00+00:00",
        "finished": "2024-05-01T10:04:30+00:00",
        "seed": 20210311,
        "config": {
            "inputs": {"samples": "samples.csv", "note": "<b>bold</b>"},
            "cluster": {"k": 3},
        },
        "inputs": [{"path": "data/samples.csv", "sha256": "ab" * 32, "bytes": 1234}],
        "versions": {"numpy": "2.1.0", "pandas": "2.2.3"},
        "stages": [
            {
                "name": s,
                "status": statuses.get(s, "done"),
                "seconds": 1.5,
                "outputs": [f"tables/{s}.csv"],
            }
            for s in STAGES
        ],
        "platform": {"python": "3.11.2", "machine": "x86_64"},
    }


def make_run(root: Path, *, statuses: dict[str, str] | None = None, drop: tuple = ()) -> Path:
    """A fake run folder: small tables of every kind, one PNG, one SVG, run.json."""
    rng = np.random.default_rng(0)
    (root / "tables").mkdir(parents=True)
    (root / "figures").mkdir()
    genes = [f"G{i:03d}" for i in range(300)]
    pvals = rng.uniform(1e-8, 1, size=300)
    tables = {
        "qc_events": pd.DataFrame(
            {
                "sample_id": ["s1", "s2"],
                "events_in": [1000, 2000],
                "bead": [10, 20],
                "events_out": [900, 1800],
                "pct_kept": [90.0, 90.0],
            }  # fmt: skip
        ),
        "cluster_phenotypes": pd.DataFrame(
            {
                "cluster": ["1", "2"],
                "subset": ["T1 <script>alert(1)</script>", "NK-1"],
                "CD3": [3.1, 0.2],
                "CD56": [0.1, 2.5],
            }  # fmt: skip
        ),
        "subset_frequencies": pd.DataFrame(
            {"sample_id": ["s1", "s2"], "T1": [12.5, 3.25], "NK-1": [4.0, 9.75]}
        ),
        "stability": pd.DataFrame(
            {"cluster": ["1", "2"], "n": [20, 18], "mean_jaccard": [0.91, 0.8]}
        ),
        "sensitivity": pd.DataFrame({"kappa": [0.863], "n_changed": [2]}),
        "subset_tests": pd.DataFrame(
            {
                "feature": ["T1", "T2", "NK-1"],
                "statistic": [12.0, 1.0, 7.5],
                "pvalue": [0.0001234, 0.61, 0.012345],
                "padj": [0.00037, 0.61, 0.0185],
            }  # fmt: skip
        ),
        "clinical_table": pd.DataFrame({"variable": ["age"], "1": ["60 (55-70)"], "pvalue": [0.4]}),
        "survival": pd.DataFrame({"group": ["1", "2"], "n": [20, 18], "median": [40.2, np.nan]}),
        "cox": pd.DataFrame({"term": ["cluster 2"], "HR": [2.1], "pvalue": [0.03]}),
        "de_results": pd.DataFrame(
            {
                "baseMean": rng.uniform(1, 5e4, 300),
                "log2FoldChange": rng.normal(size=300),
                "pvalue": pvals,
                "padj": np.minimum(pvals * 3, 1.0),
            },
            index=genes,  # fmt: skip
        ),
        "gsea_hallmark": pd.DataFrame(
            {"Term": ["HALLMARK_E2F_TARGETS"], "NES": [2.1], "FDR": [0.001]}
        ),
        "cytokine_tests": pd.DataFrame({"feature": ["IL6"], "pvalue": [0.5], "padj": [0.9]}),
    }
    for name, frame in tables.items():
        if name not in drop:
            frame.to_csv(root / "tables" / f"{name}.csv", index=name == "de_results")
    _png(root / "figures" / "clusters_heatmap.png")
    (root / "figures" / "survival_os.svg").write_text(SVG)
    (root / "run.json").write_text(json.dumps(_run_json(statuses), indent=2))
    return root


class _Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "wbr", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))
        if tag == "h2":
            self._in_h2, self.h2 = True, [*self.h2, ""]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, str]:
    root = make_run(tmp_path / "run")
    out = write_report(root)
    return root, out.read_text(encoding="utf-8")


def test_sections_in_order_and_markup_balanced(report):
    root, text = report
    assert (root / "report.html").is_file()
    doc = _parse(text)
    assert not doc.errors, doc.errors[:5]
    assert doc.stack == []
    titles = [re.sub(r"^\d+\.\s*", "", h) for h in doc.h2]
    assert titles == HEADINGS


def test_figures_are_inlined_not_referenced(report):
    root, text = report
    doc = _parse(text)
    assert len(doc.imgs) == 2
    assert all(src.startswith("data:image/") for src in doc.imgs)
    assert 'src="figures/' not in text
    png = next(s for s in doc.imgs if s.startswith("data:image/png;base64,"))
    assert (
        base64.b64decode(png.split(",", 1)[1])
        == (root / "figures/clusters_heatmap.png").read_bytes()
    )
    svg = next(s for s in doc.imgs if s.startswith("data:image/svg+xml;base64,"))
    assert base64.b64decode(svg.split(",", 1)[1]).decode() == SVG
    # the heatmap sits in the cluster-phenotype section, the KM curve in survival
    clusters = text.split('<section id="clusters">')[1].split("</section>")[0]
    survival = text.split('<section id="survival">')[1].split("</section>")[0]
    assert "data:image/png" in clusters and "data:image/svg+xml" in survival


def test_no_external_resources(report):
    _, text = report
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower()
    assert "<link" not in text.lower()
    assert "url(" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    srcs = re.findall(r'\bsrc="([^"]*)"', text)
    assert srcs and all(s.startswith("data:") for s in srcs)


def test_values_from_files_are_escaped(report):
    _, text = report
    assert "T1 &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in text  # a config value from run.json
    assert "<b>bold</b>" not in text


def test_escaping_of_names_summary_and_figure_files(tmp_path):
    root = make_run(tmp_path / "run")
    pd.DataFrame({'"><img src=x>': [1]}).to_csv(root / "tables" / "weird.csv", index=False)
    _png(root / "figures" / "qc_<b>x.png")
    (root / "summary.json").write_text(json.dumps({"patients": {"k": 3, "<i>x": "<u>y</u>"}}))
    text = write_report(root).read_text()
    assert "<img src=x>" not in text and "&quot;&gt;&lt;img src=x&gt;" in text
    assert "<u>y</u>" not in text and "&lt;i&gt;x" in text and "&lt;u&gt;y&lt;/u&gt;" in text
    assert "qc_&lt;b&gt;x.png" in text and "<b>x" not in text
    assert not _parse(text).errors


def test_big_table_is_truncated_to_top_rows_by_padj(tmp_path):
    root = make_run(tmp_path / "run")
    text = write_report(root, max_rows=20).read_text()
    de = text.split('id="table-de_results"')[1].split("</table>")[0]
    assert "Showing the top 20 of 300 rows, sorted by padj (ascending)" in de
    assert 'href="tables/de_results.csv"' in de
    shown = re.findall(r"<tr[^>]*><td>(G\d{3})</td>", de)
    full = pd.read_csv(root / "tables/de_results.csv", index_col=0)
    expected = full.sort_values("padj", kind="mergesort").index[:20].tolist()
    assert shown == expected
    # highlighted rows are exactly those with padj < 0.05 among the shown ones
    n_sig_shown = sum(1 for g in expected if full.loc[g, "padj"] < 0.05)
    assert de.count('<tr class="sig">') == n_sig_shown
    assert f"{int((full['padj'] < 0.05).sum())} of 300 rows have padj &lt; 0.05" in de


def test_p_value_formatting_and_highlighting(report):
    _, text = report
    assert fmt_p(0.012345) == "0.0123"
    assert fmt_p(0.0001234) == "1.23e-04"
    assert fmt_p(1.0) == "1"
    assert fmt_p(float("nan")) == "NA"
    tests = text.split('id="table-subset_tests"')[1].split("</table>")[0]
    assert "1.23e-04" in tests and "0.0123" in tests and "0.61" in tests
    assert tests.count('<tr class="sig">') == 2  # padj 0.00037 and 0.0185, not 0.61


def test_missing_sections_say_not_run_or_no_input(tmp_path):
    root = make_run(
        tmp_path / "run",
        statuses={"rnaseq": "not run", "stats": "skipped (unchanged)"},
        drop=("de_results", "gsea_hallmark", "cytokine_tests", "cox"),
    )
    text = write_report(root).read_text()
    rna = text.split('<section id="rna">')[1].split("</section>")[0]
    assert "<strong>not run</strong>" in rna and "rnaseq stage was not run" in rna
    cyto = text.split('<section id="cytokines">')[1].split("</section>")[0]
    assert "<strong>no input</strong>" in cyto
    surv = text.split('<section id="survival">')[1].split("</section>")[0]
    assert "cox.csv</code>: <strong>no input</strong>" in surv and "data:image/svg" in surv
    nav = text.split("<nav>")[1].split("</nav>")[0]
    assert 'Differential expression and GSEA</a> <span class="tag">(not run)</span>' in nav


def test_failed_stage_is_flagged_even_with_stale_tables(tmp_path):
    root = make_run(tmp_path / "run", statuses={"stats": "failed"})
    (root / "tables" / "cox.csv").unlink()
    text = write_report(root).read_text()
    surv = text.split('<section id="survival">')[1].split("</section>")[0]
    assert "stage failed in this run" in surv
    assert "<strong>failed</strong>" in surv


def test_summary_status_overrides(tmp_path):
    root = make_run(tmp_path / "run", drop=("cytokine_tests",))
    (root / "summary.json").write_text(
        json.dumps(
            {
                "cytokines": {"_status": "no input", "_note": "no cytokines file in the config"},
                "patients": {"k": 3, "sizes": [20, 18]},
                "overview": {"patients": 38},
                "misc": {"x": 1},
            }
        )
    )
    text = write_report(root).read_text()
    cyto = text.split('<section id="cytokines">')[1].split("</section>")[0]
    assert "<strong>no input</strong> &mdash; no cytokines file in the config" in cyto
    pats = text.split('<section id="patients">')[1].split("</section>")[0]
    assert "<dt>sizes</dt><dd>20, 18</dd>" in pats
    over = text.split('<section id="overview">')[1].split("</section>")[0]
    assert "sizes: 20, 18" in over and "Cohen&#x27;s kappa 0.863" in over
    assert "2 samples: 3,000 events in, 2,700 out (90.0% kept)" in over
    assert "<dt>patients</dt><dd>38</dd>" in over  # summary["overview"]
    assert "<dt>misc</dt><dd>x: 1</dd>" in over  # unknown keys are shown, not dropped


def test_identical_bytes_for_identical_inputs(tmp_path):
    root = make_run(tmp_path / "a" / "run")
    first = write_report(root).read_bytes()
    second = write_report(root).read_bytes()
    assert first == second
    copy = tmp_path / "elsewhere" / "other_name"
    shutil.copytree(root, copy)
    (copy / "report.html").unlink()
    assert write_report(copy).read_bytes() == first  # no absolute path, no clock in the page


def test_write_is_atomic(tmp_path, monkeypatch):
    root = make_run(tmp_path / "run")
    (root / "report.html").write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("itme.report._html.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(root)
    assert (root / "report.html").read_text() == "old"
    assert sorted(p.name for p in root.iterdir()) == [
        "figures",
        "report.html",
        "run.json",
        "tables",
    ]


def test_damaged_files_do_not_stop_the_report(tmp_path):
    root = make_run(tmp_path / "run")
    (root / "tables" / "cox.csv").write_bytes(b'a,b\n"1,2\n\xff\xfe\x00')
    (root / "figures" / "qc_broken.png").write_bytes(b"not a png")
    (root / "figures" / "notes.txt").write_text("x")
    (root / "figures" / "overview_x.png").write_bytes(
        (root / "figures/clusters_heatmap.png").read_bytes()
    )
    (root / "tables" / "de_results.tsv").write_text("x")
    text = write_report(root).read_text()
    assert "cox.csv</code> could not be read" in text
    assert "not embedded: is not a PNG file" in text
    assert "Other results" in text and "notes.txt" in text and "de_results.tsv" in text
    other = text.split('<section id="other">')[1].split("</section>")[0]
    assert 'alt="overview_x"' in other  # a prefix that names no results section
    titles = [re.sub(r"^\d+\.\s*", "", h) for h in _parse(text).h2]
    assert titles == [*HEADINGS[:-1], "Other results", "Provenance"]


def test_png_preferred_when_svg_also_exists(tmp_path):
    root = make_run(tmp_path / "run")
    _png(root / "figures" / "survival_os.png")
    (root / "figures" / "rna_evil.svg").write_text(
        SVG.replace("<rect", "<script>alert(1)</script><rect")
    )
    text = write_report(root).read_text()
    surv = text.split('<section id="survival">')[1].split("</section>")[0]
    assert "data:image/png" in surv and "data:image/svg" not in surv
    assert 'href="figures/survival_os.svg"' in surv
    assert "<script" not in text  # an SVG's script stays inside its base64 data URI


def test_missing_run_json_still_writes(tmp_path):
    root = make_run(tmp_path / "run")
    (root / "run.json").unlink()
    with pytest.warns(ItmeInputWarning, match="run.json not found"):
        text = write_report(root).read_text()
    prov = text.split('<section id="provenance">')[1].split("</section>")[0]
    assert "<strong>no input</strong>" in prov


def test_bad_arguments():
    with pytest.raises(ItmeParameterError, match="max_rows"):
        write_report(Path(__file__).parent, max_rows=0)
    with pytest.raises(ItmeInputError, match="expected a pipeline run folder"):
        write_report(Path(__file__).parent / "no_such_run")


def test_provenance_lists_inputs_versions_config_and_timings(report):
    _, text = report
    prov = text.split('<section id="provenance">')[1].split("</section>")[0]
    assert "ab" * 32 in prov and "data/samples.csv" in prov and "1,234" in prov
    assert "numpy" in prov and "2.1.0" in prov
    assert "cluster:\n  k: 3" in prov  # config as YAML
    assert "20210311" in prov
    assert prov.count('<span class="badge done">done</span>') == len(STAGES)
    assert f"<b>{1.5 * len(STAGES):.1f}</b>" in prov
    over = text.split('<section id="overview">')[1].split("</section>")[0]
    assert "4 min 30 s" in over


def test_the_backend_of_the_cell_level_stages_is_in_overview_and_provenance(tmp_path):
    root = make_run(tmp_path / "run")
    record = json.loads((root / "run.json").read_text())
    reason = "an in-memory run of 30,000,000 events x 47 channels would peak at ~29.3 GB"
    record["backend"] = {"backend": "store", "reason": reason, "events": 30_000_000}
    (root / "run.json").write_text(json.dumps(record))
    text = write_report(root).read_text(encoding="utf-8")
    line = f"on the cohort store (Dask): {reason}"
    for section in ("overview", "provenance"):
        body = text.split(f'<section id="{section}">')[1].split("</section>")[0]
        assert line in body, section
    assert "Other run.json fields" not in text  # shown as a fact, not as raw JSON


def test_page_written_by_the_report_stage_does_not_say_it_is_running(tmp_path):
    # the runner records the report stage as running while that stage writes the page
    root = make_run(tmp_path / "run")
    record = json.loads((root / "run.json").read_text())
    record["status"] = "running"
    record["stages"].append({"name": "report", "status": "running", "seconds": None})
    (root / "run.json").write_text(json.dumps(record))
    text = write_report(root).read_text(encoding="utf-8")
    assert "running" not in text
    assert '<span class="mono">report</span> <span class="badge done">done</span>' in text


def test_a_stage_really_running_is_still_shown(tmp_path):
    root = make_run(tmp_path / "run", statuses={"rnaseq": "running"})
    record = json.loads((root / "run.json").read_text())
    record["status"] = "running"
    (root / "run.json").write_text(json.dumps(record))
    assert "running" in write_report(root).read_text(encoding="utf-8")


def test_gsea_zero_is_shown_as_below_one_over_permutations(tmp_path):
    root = make_run(tmp_path / "run")
    record = json.loads((root / "run.json").read_text())
    record["config"]["rnaseq"] = {"permutations": 1000}
    (root / "run.json").write_text(json.dumps(record))
    pd.DataFrame(
        {
            "Term": ["HALLMARK_E2F_TARGETS", "HALLMARK_MYC_TARGETS_V1"],
            "NES": [2.4, 2.0],
            "pvalue": [0.0, 0.004],
            "FDR": [0.0, 0.012],
        }  # fmt: skip
    ).to_csv(root / "tables" / "gsea_hallmark.csv", index=False)
    text = write_report(root).read_text(encoding="utf-8")
    table = text.split('id="table-gsea_hallmark"')[1].split("</table>")[0]
    body = table.split("<tbody>")[1]
    assert body.count("&lt; 0.001") == 2  # pvalue and FDR of the first set
    assert ">0<" not in body
    assert "1,000 permutations" in table
    assert fmt_p(0.0) == "0"  # other tables: a zero is a zero
