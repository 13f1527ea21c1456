"""Render an itme report in headless Chromium: screenshot, DOM checks, image decoding.

Usage::

    /work/venv/bin/python scripts/check_report_browser.py                 # example run
    /work/venv/bin/python scripts/check_report_browser.py RUN/report.html \\
        --screenshot /tmp/report.png

Without a report path, an example run folder (synthetic tables and matplotlib figures of
every section) is built in a temporary directory and its report is checked. Nothing is
written into the repository; the screenshot goes to ``--screenshot`` (default
``/tmp/itme_report_screenshot.png``).

Checks, each printed as ok/FAIL:

1. Chromium renders the page and writes a screenshot (``--window-size=1400,3000``;
   ``--height`` makes it taller to see the whole page).
2. The DOM (``--dump-dom``) has every section heading, in order.
3. Every ``<img>`` has a ``data:`` URI source.
4. In an instrumented copy of the page (the same Content-Security-Policy plus one
   nonce'd script), every image decoded (``naturalWidth > 0``) and the browser reported
   no CSP violation, i.e. the page tried to load nothing from outside itself.
5. In a 900 × 700 window, no element outside a table's scroll box (or a ``<pre>``) runs
   past the right edge, and no scroll box is taller than the window (its scroll bars stay
   in view).

Exit 0 when all checks pass, 1 when one fails, 2 when Chromium is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from itme.report._run import SECTIONS

CHROMIUM = Path("/usr/bin/chromium")
#: the report's section headings, in order ("Other results" only appears when needed)
HEADINGS = [s.title for s in SECTIONS]
NONCE = "itmecheck"
PROBE = f"""<script nonce="{NONCE}">
(function () {{
  var violations = [];
  document.addEventListener("securitypolicyviolation", function (e) {{
    violations.push(e.violatedDirective + " " + e.blockedURI);
  }});
  window.addEventListener("load", function () {{
    setTimeout(function () {{
      var imgs = document.querySelectorAll("img"), bad = 0;
      for (var i = 0; i < imgs.length; i++) {{
        var ok = imgs[i].complete && imgs[i].naturalWidth > 0;
        imgs[i].setAttribute("data-decoded", ok ? "yes" : "no");
        if (!ok) bad++;
      }}
      var root = document.documentElement, wide = [];
      document.querySelectorAll("body *").forEach(function (e) {{
        if (e.closest(".scroll") || e.closest("pre")) return;
        if (e.getBoundingClientRect().right > window.innerWidth + 1) wide.push(e.tagName);
      }});
      var tall = 0;
      document.querySelectorAll(".scroll").forEach(function (e) {{
        if (e.getBoundingClientRect().height > 0.71 * window.innerHeight) tall++;
      }});
      root.setAttribute("data-wide", String(wide.length));
      root.setAttribute("data-tall", String(tall));
      root.setAttribute("data-images", String(imgs.length));
      root.setAttribute("data-broken", String(bad));
      root.setAttribute("data-violations", JSON.stringify(violations));
    }}, 200);
  }});
}})();
</script>"""


def chromium(args: list[str], user_dir: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run headless Chromium with the project's fixed flags plus ``args``."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_dir}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.root: dict[str, str] = {}
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.root = attrs
        elif tag == "img":
            self.imgs.append(attrs)
        elif tag == "h2":
            self._in_h2 = True
            self.h2.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


def _dom(text: str) -> _Dom:
    dom = _Dom()
    dom.feed(text)
    dom.close()
    return dom


def _instrument(html_text: str) -> str:
    """The page with one nonce'd probe script allowed by (and placed after) its CSP."""
    match = re.search(
        r'(<meta http-equiv="Content-Security-Policy" content=")([^"]*)(">)', html_text
    )
    if match is None:
        raise SystemExit("the report has no Content-Security-Policy meta tag")
    csp = match.group(2) + f"; script-src 'nonce-{NONCE}'"
    return (
        html_text[: match.start()]
        + match.group(1)
        + csp
        + match.group(3)
        + "\n"
        + PROBE
        + html_text[match.end() :]
    )


def check(report: Path, screenshot: Path, height: int = 3000) -> bool:
    """Run all checks on ``report``; print one line per check; True when all pass."""
    results: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="itme-chromium-") as tmp:
        tmp = Path(tmp)
        url = report.resolve().as_uri()
        shot = chromium(
            [f"--screenshot={screenshot}", f"--window-size=1400,{height}", url], tmp / "p1"
        )
        ok = shot.returncode == 0 and screenshot.is_file() and screenshot.stat().st_size > 0
        size = f"{screenshot.stat().st_size / 1024:.0f} kB" if screenshot.is_file() else "none"
        results.append(("screenshot written", ok, f"{screenshot} ({size}); rc={shot.returncode}"))

        dumped = chromium(["--dump-dom", url], tmp / "p2")
        dom = _dom(dumped.stdout)
        titles = [re.sub(r"^\d+\.\s*", "", h).strip() for h in dom.h2]
        expected = [t for t in titles if t in HEADINGS]
        ok = expected == HEADINGS
        results.append(
            ("section headings in order", ok, " | ".join(titles) or dumped.stderr[-300:])
        )
        srcs = [i.get("src", "") for i in dom.imgs]
        bad = [s[:60] for s in srcs if not s.startswith("data:")]
        results.append(
            ("all <img> are data: URIs", not bad, f"{len(srcs)} images; not data: {bad}")
        )

        probe_page = tmp / "probe.html"
        probe_page.write_text(_instrument(report.read_text(encoding="utf-8")), encoding="utf-8")
        probed = chromium(
            [
                "--virtual-time-budget=5000",
                "--window-size=900,700",
                "--dump-dom",
                probe_page.as_uri(),
            ],
            tmp / "p3",
        )
        root = _dom(probed.stdout).root
        n_img, broken = root.get("data-images"), root.get("data-broken")
        ok = n_img is not None and broken == "0" and int(n_img) == len(srcs)
        results.append(
            ("every image decoded (naturalWidth > 0)", ok, f"{n_img} images, {broken} broken")
        )
        violations = json.loads(root.get("data-violations", "null") or "null")
        results.append(
            ("no CSP violation (nothing loaded from outside)", violations == [], f"{violations}")
        )
        wide, tall = root.get("data-wide"), root.get("data-tall")
        results.append(
            (
                "wide tables scroll in their box, nothing runs off the page",
                wide == "0" and tall == "0",
                f"{wide} element(s) past the right edge, {tall} table box(es) taller than the "
                "window",
            )
        )
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
    return all(ok for _, ok, _ in results)


def build_example(root: Path) -> Path:
    """An example run folder with figures and tables of every section; returns report path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from itme.report._html import write_report

    rng = np.random.default_rng(1)
    tables, figs = root / "tables", root / "figures"
    tables.mkdir(parents=True)
    figs.mkdir()
    samples = [f"MM{i:02d}" for i in range(1, 13)]
    n_in = rng.integers(40_000, 90_000, len(samples))
    steps = {s: (n_in * f).astype(int) for s, f in
             (("bead", 0.02), ("debris", 0.08), ("doublet", 0.05), ("dead", 0.1), ("cd45_negative", 0.3))}  # fmt: skip
    out = n_in - sum(steps.values())
    qc = pd.DataFrame({"sample_id": samples, "events_in": n_in, **steps, "events_out": out,
                       "pct_kept": 100 * out / n_in})  # fmt: skip
    qc.to_csv(tables / "qc_events.csv", index=False)
    fig, ax = plt.subplots(figsize=(8, 3))
    bottom = np.zeros(len(samples))
    for name, values in [*steps.items(), ("kept", out)]:
        ax.bar(samples, values, bottom=bottom, label=name)
        bottom += values
    ax.set_ylabel("events")
    ax.legend(ncol=6, fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "qc_accounting.png", dpi=80)
    plt.close(fig)

    markers = ["CD3", "CD4", "CD8", "CD45RA", "CCR7", "CD27", "CD28", "CD56", "CD16", "CD19"]
    markers += [f"marker_{i:02d}" for i in range(30)]  # a wide table, as a real panel gives
    subsets = [f"T{i}" for i in range(1, 9)] + ["NK-1", "NK-2", "B"]
    med = pd.DataFrame(
        rng.uniform(0, 5, (len(subsets), len(markers))), index=subsets, columns=markers
    )
    med.index.name = "subset"
    med.to_csv(tables / "cluster_phenotypes.csv")
    fig, ax = plt.subplots(figsize=(6, 4))
    im = ax.imshow(med.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(markers)), markers, rotation=90)
    ax.set_yticks(range(len(subsets)), subsets)
    fig.colorbar(im, ax=ax, label="median arcsinh")
    fig.tight_layout()
    fig.savefig(figs / "clusters_heatmap.png", dpi=80)
    plt.close(fig)

    freq = pd.DataFrame(
        rng.dirichlet(np.ones(len(subsets)), len(samples)) * 100, index=samples, columns=subsets
    )
    freq.index.name = "sample_id"
    freq.to_csv(tables / "subset_frequencies.csv")
    pd.DataFrame(
        {"cluster": ["1", "2", "3"], "n": [7, 2, 3], "mean_jaccard": [0.92, 0.71, 0.84]}
    ).to_csv(tables / "stability.csv", index=False)
    pd.DataFrame({"kappa": [0.863], "n": [31], "n_changed": [2]}).to_csv(
        tables / "sensitivity.csv", index=False
    )
    from scipy.cluster.hierarchy import dendrogram, linkage

    fig, ax = plt.subplots(figsize=(6, 3))
    dendrogram(linkage(freq.to_numpy(), "ward"), labels=samples, ax=ax)
    fig.tight_layout()
    fig.savefig(figs / "patients_dendrogram.svg")
    plt.close(fig)

    p = np.sort(rng.uniform(1e-5, 1, len(subsets)))
    pd.DataFrame({"feature": subsets, "statistic": rng.uniform(0, 20, len(subsets)), "pvalue": p,
                  "padj": np.minimum(p * len(subsets) / np.arange(1, len(subsets) + 1), 1)}).to_csv(
        tables / "subset_tests.csv", index=False)  # fmt: skip
    pd.DataFrame({"variable": ["n", "age", "disease_status", "disease_status"],
                  "level": ["", "", "NDMM", "TRMM"], "1": ["7", "64 (58-70)", "5 (71%)", "2 (29%)"],
                  "2": ["2", "61 (60-62)", "0 (0%)", "2 (100%)"], "pvalue": [np.nan, 0.41, 0.02, 0.02]}).to_csv(
        tables / "clinical_table.csv", index=False)  # fmt: skip

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for g in ("1", "2", "3"):
        t = np.sort(rng.exponential(30, 10))
        ax.step(np.r_[0, t], np.linspace(1, 0, 11), where="post", label=f"cluster {g}")
    ax.set_xlabel("months")
    ax.set_ylabel("overall survival")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "survival_os.svg")
    plt.close(fig)
    pd.DataFrame({"group": ["1", "2", "3"], "n": [7, 2, 3], "events": [3, 2, 2],
                  "median": [41.0, 12.5, np.nan], "lower": [20.1, 3.0, np.nan],
                  "upper": [np.nan, np.nan, np.nan]}).to_csv(tables / "survival.csv", index=False)  # fmt: skip
    pd.DataFrame({"term": ["itme_cluster=2", "itme_cluster=3"], "HR": [3.2, 1.4], "lower": [1.1, 0.5],
                  "upper": [9.0, 3.9], "pvalue": [0.031, 0.52]}).to_csv(tables / "cox.csv", index=False)  # fmt: skip

    genes = [f"GENE{i:05d}" for i in range(20_000)]
    pv = rng.uniform(0, 1, 20_000) ** 3
    de = pd.DataFrame({"baseMean": rng.lognormal(5, 2, 20_000), "log2FoldChange": rng.normal(0, 1, 20_000),
                       "lfcSE": rng.uniform(0.1, 1, 20_000), "stat": rng.normal(0, 3, 20_000),
                       "pvalue": pv, "padj": np.minimum(pv * 5, 1)}, index=genes)  # fmt: skip
    de.to_csv(tables / "de_results.csv")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(
        de["log2FoldChange"], -np.log10(de["pvalue"]), s=2, c=de["padj"] < 0.05, cmap="coolwarm"
    )
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 p")
    fig.tight_layout()
    fig.savefig(figs / "rna_volcano.png", dpi=80)
    plt.close(fig)
    pd.DataFrame({"Term": ["HALLMARK_E2F_TARGETS", "HALLMARK_G2M_CHECKPOINT", "HALLMARK_INTERFERON_GAMMA_RESPONSE"],
                  "ES": [0.61, 0.55, -0.52], "NES": [2.4, 2.1, -1.9], "pvalue": [0.0, 0.001, 0.002],
                  "FDR": [0.0, 0.004, 0.01], "leading_edge": [";".join(genes[:60]), "G1;G2", "IFNG;STAT1"]}).to_csv(
        tables / "gsea_hallmark.csv", index=False)  # fmt: skip
    # cytokines left out on purpose: the section must say "no input"

    from itme.pipeline import STAGE_NAMES

    run = {
        "itme_version": "0.1.0", "started": "2024-05-01T10:00:00+00:00",
        "finished": "2024-05-01T10:03:12+00:00", "seed": 20210311,
        "config": {"inputs": {"samples": "samples.csv", "panel": "panel.csv"}, "cluster": {"k": 3}},
        "inputs": [{"path": "samples.csv", "sha256": "0" * 64, "bytes": 812}],
        "versions": {"numpy": np.__version__, "pandas": pd.__version__},
        "stages": [{"name": s, "status": "done", "seconds": 10.0, "outputs": []} for s in STAGE_NAMES],
        "platform": {"python": sys.version.split()[0]},
    }  # fmt: skip
    (root / "run.json").write_text(json.dumps(run, indent=2))
    (root / "summary.json").write_text(
        json.dumps(
            {
                "patients": {"k": 3, "sizes": [7, 2, 3], "kappa": 0.863},
                "captions": {"clusters_heatmap": "Median marker expression per subset"},
            }
        )  # fmt: skip
    )
    return write_report(root, title="itme example report")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "report", nargs="?", type=Path, help="report.html (default: build an example)"
    )
    parser.add_argument("--screenshot", type=Path, default=Path("/tmp/itme_report_screenshot.png"))
    parser.add_argument(
        "--height", type=int, default=3000, help="window height (px) of the screenshot"
    )
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        print(
            f"{CHROMIUM} not found. Install Debian's Chromium with:\n  apt-get install -y chromium"
        )
        return 2
    if args.report is None:
        with tempfile.TemporaryDirectory(prefix="itme-report-example-") as tmp:
            report = build_example(Path(tmp) / "run")
            print(f"example report: {report} ({report.stat().st_size / 1024:.0f} kB)")
            return 0 if check(report, args.screenshot, args.height) else 1
    if not args.report.is_file():
        print(f"{args.report}: no such file")
        return 2
    return 0 if check(args.report, args.screenshot, args.height) else 1


if __name__ == "__main__":
    sys.exit(main())
