"""itme.pl.gsea_nes and itme.pl.volcano."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from itme.errors import ItmeParameterError
from itme.pl import gsea_nes, volcano
from itme.pl._rna import DOWN_COLOR, UP_COLOR


def _gsea_table():
    return pd.DataFrame(
        {
            "Term": [
                "HALLMARK_E2F_TARGETS",
                "HALLMARK_G2M_CHECKPOINT",
                "HALLMARK_HYPOXIA",
                "HALLMARK_INTERFERON_ALPHA_RESPONSE",
                "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
            ],
            "NES": [2.5, 2.1, 0.4, -1.9, -2.2],
            "FDR": [0.001, 0.01, 0.8, 0.02, 0.04],
        }
    )


def test_nes_bars_only_significant_sets_coloured_by_direction():
    fig = gsea_nes(_gsea_table(), up_label="up in 2+3", down_label="down in 2+3")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 4  # HYPOXIA (FDR 0.8) is left out
    widths = sorted(b.get_width() for b in bars)
    assert widths == [-2.2, -1.9, 2.1, 2.5]
    for b in bars:
        expected = UP_COLOR if b.get_width() > 0 else DOWN_COLOR
        assert to_hex(b.get_facecolor()) == expected
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "E2F TARGETS" and labels[0] == "TNFA SIGNALING VIA NFKB"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["up in 2+3", "down in 2+3"]


def test_nes_top_and_empty():
    ax = gsea_nes(_gsea_table(), top=1).axes[0]
    assert sorted(b.get_width() for b in ax.patches) == [-2.2, 2.5]
    empty = gsea_nes(_gsea_table(), fdr=0.0005)
    assert "no gene set" in empty.axes[0].texts[0].get_text()
    with pytest.raises(ItmeParameterError, match="gsea"):
        gsea_nes(pd.DataFrame({"Term": ["x"]}))


def test_nes_zero_q_printed_as_below_one_over_permutations():
    table = _gsea_table()
    table.loc[0, "FDR"] = 0.0
    texts = [t.get_text() for t in gsea_nes(table, permutations=1000).axes[0].texts]
    assert "q<0.001" in texts and "q=0" not in texts
    table.attrs["permutations"] = 100  # as itme.rna.gsea leaves it
    assert "q<0.01" in [t.get_text() for t in gsea_nes(table).axes[0].texts]


def test_volcano_colours_and_labels():
    gen = np.random.default_rng(0)
    n = 300
    res = pd.DataFrame(
        {
            "gene_name": [f"G{i}" for i in range(n)],
            "log2FoldChange": gen.normal(0, 1, n),
            "pvalue": gen.uniform(0, 1, n),
        }
    )
    res.loc[:9, "log2FoldChange"] = 3.0
    res.loc[:9, "pvalue"] = 1e-12
    res.loc[10:14, "log2FoldChange"] = -2.0
    res.loc[10:14, "pvalue"] = 0.0  # drawn at the smallest positive p-value
    res["padj"] = np.minimum(res["pvalue"] * n, 1.0)
    res.attrs["contrast"] = ["itme_cluster", "2+3", "1"]
    fig = volcano(res, alpha=0.1, lfc=1.0, label=5)
    ax = fig.axes[0]
    assert ax.get_title() == "itme_cluster: 2+3 vs 1"
    sizes = [len(c.get_offsets()) for c in ax.collections]
    assert sizes[1] == 10 and sizes[2] == 5  # up and down
    assert sum(sizes) == n
    assert len(ax.texts) == 5
    assert np.isfinite(np.asarray(ax.collections[2].get_offsets())).all()
    with pytest.raises(ItmeParameterError, match="results"):
        volcano(res.drop(columns="padj"))


def test_volcano_with_shrunken_fold_changes():
    gen = np.random.default_rng(1)
    n = 200
    mle = gen.normal(0, 2, n)
    res = pd.DataFrame(
        {
            "log2FoldChange": mle,
            "log2FoldChange_shrunk": mle * 0.3,  # everything pulled towards 0
            "pvalue": np.full(n, 1e-6),
            "padj": np.full(n, 1e-4),
        }
    )
    n_out = int((np.abs(mle) >= 1).sum())
    n_in = int((np.abs(mle * 0.3) >= 1).sum())
    assert n_in < n_out
    fig = volcano(res, lfc=1.0, label=0)
    coloured = sum(len(c.get_offsets()) for c in fig.axes[0].collections[1:])
    assert coloured == n_out
    fig = volcano(res, lfc=1.0, label=0, shrunk=True)
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections[1:]) == n_in
    assert ax.get_xlabel() == "shrunken log2 fold change"
    np.testing.assert_allclose(
        np.sort(np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])),
        np.sort(mle * 0.3),
    )
    with pytest.raises(ItmeParameterError, match="lfc_shrink=True"):
        volcano(res.drop(columns="log2FoldChange_shrunk"), shrunk=True)
