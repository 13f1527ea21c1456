"""Architecture metrics of the package (issue "one definition per concept").

Counts, for a source tree (default: this checkout's ``itme/``):

- lines of code (all lines, and lines that are not blank, comments or docstrings);
- modules that import another namespace's private module (``itme.stats._data`` imported from
  ``itme.tl``); package-level internals (``itme._random``) are allowed;
- for each cleaning-step name and each table name of a run, the number of modules that spell
  it as a string literal (target: 1, the table that defines it).

Usage::

    python scripts/architecture_metrics.py [path/to/itme]
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

STEP_NAMES = ("bead", "debris", "doublet", "dead", "cd45_negative", "cd45")
TABLE_NAMES = (
    "qc_events",
    "qc_thresholds",
    "cluster_phenotypes",
    "cluster_annotation",
    "subset_frequencies",
    "itme_clusters",
    "cluster_diagnostics",
    "stability",
    "sensitivity",
    "subset_tests",
    "compartment_tests",
    "subset_posthoc",
    "clinical_table",
    "survival",
    "logrank",
    "cox",
    "cytokine_tests",
    "de_results",
    "gsea_hallmark",
    "pathway_scores",
    "pathway_subset_correlations",
)


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    out = []
    pkg = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append(target)
            out += [f"{target}.{a.name}" for a in node.names]
    return out


def _foreign_private(importer: str, target: str) -> bool:
    parts = target.split(".")
    if parts[0] != "itme" or len(parts) < 3:
        return False
    namespace, rest = parts[1], parts[2:]
    if namespace.startswith("_"):
        return False  # package-level internal module (itme._random, ...)
    mine = importer.split(".")[1] if importer.count(".") >= 1 else ""
    return namespace != mine and any(p.startswith("_") for p in rest)


def _strings(tree: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _code_lines(text: str, tree: ast.AST) -> int:
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                doc_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    n = 0
    for i, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith("#") and i not in doc_lines:
            n += 1
    return n


def main(root: Path) -> None:
    files = sorted(p for p in root.rglob("*.py"))
    total = code = 0
    offenders: dict[str, list[str]] = {}
    spelled: Counter[str] = Counter()
    for path in files:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        total += len(text.splitlines())
        code += _code_lines(text, tree)
        module = _module_name(root, path)
        bad = sorted(
            {
                t
                for t in _imports(tree, module, path.name == "__init__.py")
                if _foreign_private(module, t)
            }
        )
        if bad:
            offenders[module] = bad
        strings = _strings(tree)
        for name in STEP_NAMES + TABLE_NAMES:
            if any(s == name or s.startswith(f"{name}.") or s == f"{name}_" for s in strings):
                spelled[name] += 1
    print(f"source tree: {root}")
    print(f"modules: {len(files)}; lines: {total}; code lines: {code}")
    print(f"modules importing another namespace's private module: {len(offenders)}")
    for mod, targets in offenders.items():
        print(f"  {mod}: {', '.join(targets)}")
    print("modules spelling each cleaning-step name:")
    print("  " + ", ".join(f"{n} {spelled[n]}" for n in STEP_NAMES))
    print("modules spelling each table name:")
    print("  " + ", ".join(f"{n} {spelled[n]}" for n in TABLE_NAMES))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "itme")
