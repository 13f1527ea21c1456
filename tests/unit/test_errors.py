"""The error hierarchy and message shapes of itme.errors."""

from __future__ import annotations

import pytest

from itme.errors import (
    ItmeDependencyError,
    ItmeError,
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeInputWarning,
    ItmeParameterError,
    ItmeStateError,
    ItmeStatisticsWarning,
    ItmeWarning,
)


def test_errors_are_value_errors():
    for cls in (ItmeInputError, ItmeParameterError, ItmeStateError):
        assert issubclass(cls, ItmeError) and issubclass(cls, ValueError)
    assert issubclass(ItmeDependencyError, ImportError)
    for cls in (ItmeInputWarning, ItmeExclusionWarning, ItmeStatisticsWarning):
        assert issubclass(cls, ItmeWarning) and issubclass(cls, UserWarning)


def test_input_error_message_has_where_expected_found_fix():
    err = ItmeInputError(
        where="panel.csv line 12, column marker_class",
        expected="one of type, state, qc, none",
        found='"lineage"',
        fix="Correct the value.",
    )
    assert (
        str(err)
        == 'panel.csv line 12, column marker_class: expected one of type, state, qc, none, found "lineage". Correct the value.'
    )
    assert err.where.startswith("panel.csv") and err.found == '"lineage"'


def test_parameter_error_shape():
    with pytest.raises(ItmeParameterError, match=r"parameter 'k': expected an integer ≥ 2, got 1"):
        raise ItmeParameterError("k", "an integer ≥ 2", 1)


def test_dependency_error_names_the_extra():
    err = ItmeDependencyError("cytonormpy", "cytonorm", "Batch normalisation")
    assert "pip install 'itme[cytonorm]'" in str(err)
