"""Public API conventions (STYLE.md §1, §7): one test walks every namespace's ``__all__``."""

from __future__ import annotations

import inspect
import re

import pytest

import itme

NAMESPACES = ["io", "pp", "tl", "stats", "rna", "pl", "datasets"]
# functions whose leading inputs are not an AnnData: the number of positional parameters allowed
POSITIONAL = {"read_cohort": 2, "check_cohort": 2, "write_fcs": 2, "add_clinical": 2}


def _public_functions():
    for ns in NAMESPACES:
        mod = getattr(itme, ns)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                yield pytest.param(obj, id=f"{ns}.{name}")


FUNCTIONS = list(_public_functions())


def test_every_namespace_exports_something():
    for ns in NAMESPACES:
        assert getattr(itme, ns).__all__, f"itme.{ns} exports nothing"


def test_no_duplicate_exports():
    names = [p.id for p in FUNCTIONS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("func", FUNCTIONS)
def test_only_leading_inputs_are_positional(func):
    params = inspect.signature(func).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    allowed = POSITIONAL.get(func.__name__, 1)
    assert len(positional) <= allowed, (
        f"{func.__qualname__}: only the first {allowed} parameter(s) may be positional, "
        f"found {[p.name for p in positional]}; put the rest after '*'"
    )
    assert not any(p.kind == p.VAR_POSITIONAL for p in params)


@pytest.mark.parametrize("func", FUNCTIONS)
def test_mutation_flag_is_copy_only(func):
    params = inspect.signature(func).parameters
    assert "inplace" not in params, f"{func.__qualname__}: use copy=, not inplace="
    if "copy" in params:
        assert params["copy"].default is False
        first = next(iter(params))
        assert first == "adata", f"{func.__qualname__}: copy= only on functions of adata"


@pytest.mark.parametrize("func", FUNCTIONS)
def test_randomness_is_rng(func):
    params = inspect.signature(func).parameters
    for bad in ("seed", "random_state", "random_seed"):
        assert bad not in params, f"{func.__qualname__}: take rng=, not {bad}="
    if "rng" in params:
        assert params["rng"].default is None
        assert params["rng"].kind == params["rng"].KEYWORD_ONLY


@pytest.mark.parametrize("func", FUNCTIONS)
def test_type_hints_on_public_functions(func):
    sig = inspect.signature(func)
    missing = [n for n, p in sig.parameters.items() if p.annotation is inspect.Parameter.empty]
    assert not missing, f"{func.__qualname__}: parameters without type hints: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, (
        f"{func.__qualname__}: no return annotation"
    )


@pytest.mark.parametrize("func", FUNCTIONS)
def test_numpydoc_docstring(func):
    doc = inspect.getdoc(func) or ""
    assert doc, f"{func.__qualname__} has no docstring"
    params = [n for n in inspect.signature(func).parameters]
    if params:
        assert re.search(r"^Parameters\n-+$", doc, re.M), f"{func.__qualname__}: no Parameters"
        for name in params:
            assert re.search(rf"^{name}\b", doc, re.M), (
                f"{func.__qualname__}: parameter {name!r} not documented"
            )
    assert re.search(r"^Returns\n-+$", doc, re.M), f"{func.__qualname__}: no Returns section"


def test_core_layer_does_not_import_anndata():
    """itme.core is the array layer: numpy/scipy only (STYLE.md §9)."""
    import pathlib

    core = pathlib.Path(itme.__file__).parent / "core"
    for path in core.glob("*.py"):
        text = path.read_text()
        assert not re.search(
            r"^\s*(import|from)\s+(anndata|itme\.(io|pp|tl|pl|pipeline))", text, re.M
        ), f"{path.name} imports an adapter layer"


def test_library_has_no_print_or_assert():
    import pathlib

    pkg = pathlib.Path(itme.__file__).parent
    for path in pkg.rglob("*.py"):
        if path.name == "cli.py":
            continue
        text = path.read_text()
        assert not re.search(r"^\s*print\(", text, re.M), f"print() in {path}"
        assert not re.search(r"^\s*assert\s", text, re.M), f"assert in {path}"
