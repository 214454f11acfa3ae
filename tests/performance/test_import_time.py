"""Cold start: the modules a Lambda function's init imports stay within their budgets.

As Powertools' performance tests do, each module is imported in a fresh interpreter
(`python -X importtime`), three times: the median import time must stay under the
module's budget, and the heavy packages imported (torch, boto3, the web stack where it
is not needed) within the ones the module is allowed. Budgets and allowed packages are in
tests/import_time.py, next to the medians measured when they were set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.import_time import BUDGETS, ImportMeasurement, measure_import, read_importtime

RUNS = 3


@pytest.fixture(scope="module", params=list(BUDGETS))
def measured(request: pytest.FixtureRequest, model_dir: Path) -> ImportMeasurement:
    """The module's import, median of RUNS fresh interpreters (the models built and set)."""
    return measure_import(request.param, model_dir, RUNS)


def test_import_stays_within_its_time_budget(measured: ImportMeasurement) -> None:
    budget = BUDGETS[measured.module].ms
    assert measured.median_ms <= budget, (
        f"importing {measured.module} took {measured.median_ms:.0f} ms "
        f"(median of {list(measured.all_ms)}), over its {budget:g} ms budget"
    )


def test_import_pulls_in_only_the_heavy_packages_it_is_allowed(
    measured: ImportMeasurement,
) -> None:
    unexpected = measured.heavy - BUDGETS[measured.module].heavy_allowed
    assert not unexpected, f"importing {measured.module} now imports {sorted(unexpected)}"


# The shape `-X importtime` prints: children before their parent, two spaces of indent
# per level; a thread started by an import shifts the indentation of later lines.
IMPORTTIME_OUTPUT = """\
import time: self [us] | cumulative | imported package
import time:       134 |        134 |   _io
import time:     49984 |    1830572 |     torch
import time:       181 |       1460 |   functions.query
import time:      3010 |    1905000 |       functions.query.app
some warning a module printed
import time:       613 |        613 | botocore
"""


def test_reads_the_cumulative_time_of_the_named_module() -> None:
    sample = read_importtime(IMPORTTIME_OUTPUT, "functions.query.app")
    assert sample.ms == pytest.approx(1905.0)
    assert sample.packages == {"_io", "torch", "functions", "botocore"}
    assert sample.heavy == {"torch", "botocore"}


def test_output_without_the_module_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"`ragops\.settings` is not in"):
        read_importtime(IMPORTTIME_OUTPUT, "ragops.settings")
