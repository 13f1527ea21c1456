"""Phenotype tables of real test datasets, shared by the integration tests that read them."""

from __future__ import annotations

from itme.core.annotate.phenotypes import parse_phenotypes

#: hi/lo table for the Bodenmiller 2012 PBMC data (BCR-XL; CATALYST's workflow dataset):
#: the 10 lineage markers of its panel
BODENMILLER = parse_phenotypes(
    """
name: pbmc_bodenmiller_test
# CD3 is read on cadmium (110-114) here; monocyte clusters carry a CD3 background of
# 1.5-2 (arcsinh) that an automatic cut cannot tell from dim T cells, so the cut is given.
thresholds: {CD3: 2.2}
lineages:
  T:
    markers: {CD3: hi, CD20: lo, CD14: lo, CD33: lo}
    subsets:
      CD4 T: {markers: {CD4: hi}}
      CD8 T: {markers: {CD4: lo}}      # the panel has no CD8: CD3+ CD4- T cells
  B:
    markers: {CD3: lo, CD20: hi}
    subsets:
      B cells: {}
  NK:
    markers: {CD3: lo, CD20: lo, CD14: lo, CD33: lo, CD4: lo, CD7: hi}
    subsets:
      NK cells: {}
  Other:
    markers: {CD3: lo, CD20: lo, CD7: lo}
    other: other non-lymphoid
    subsets:
      Monocytes: {markers: {CD14: hi, CD33: hi}}
      pDC: {markers: {CD14: lo, CD123: hi, HLA-DR: hi}}
      Basophils: {markers: {CD14: lo, CD123: hi, HLA-DR: lo}}
"""
)
