"""The suite's own rule: a test with no kind marker (unit, integration, slow) stops the run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()
MARKERS = '[pytest]\nmarkers =\n    unit: u\n    integration: i\n    slow: s\naddopts = --strict-markers\nasyncio_default_fixture_loop_scope = function\n'


def test_an_unmarked_test_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeini(MARKERS)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_one="def test_forgotten():\n    assert True\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*1 test(s) carry none of the markers unit, integration, slow*",
                                 "*test_one.py::test_forgotten*"])


def test_a_marked_test_runs(pytester: pytest.Pytester) -> None:
    pytester.makeini(MARKERS)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_one="import pytest\npytestmark = pytest.mark.unit\n\ndef test_fine():\n    assert True\n")
    assert pytester.runpytest().ret == pytest.ExitCode.OK
