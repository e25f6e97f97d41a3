"""Perspective's own table tests, from the installed wheel, through our consumer under daphne.

Each file runs twice in pytest subprocesses (``tests/perspective_suite.py``): in-process, as
the wheel ships it, and with every client the suite makes routed to a real daphne process
serving ``WritableConsumer`` (clients may create tables and use their own; the rest of the
guard stays on). Every test that passes in-process must pass through the consumer, but
for the few the guard refuses on purpose (``GUARD_DIFFERENCES``). CI runs
the update, view and expression files; ``python -m tests.perspective_suite`` runs all of
``table/``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from .perspective_suite import run_suite, suite_server
from .servers import DaphneProcess

pytestmark = pytest.mark.e2e

FILES = ["test_update.py", "test_view.py", "test_view_expression.py"]

# Tests the guard fails on purpose (README, Security): its own refusal messages for bad
# column names, no value on unary filters, expand only on grouped views, the "safe"
# expression policy (no loops or vectors, at most 4096 characters), and request fields
# the schema does not know yet (window functions). The scheduler is not involved.
GUARD_DIFFERENCES = {
    f"test_view.TestView::{name}"
    for name in (
        "test_invalid_column_aggregate_should_throw",
        "test_invalid_column_aggregate_should_throw_and_updates_should_work",
        "test_invalid_column_should_throw",
        "test_invalid_column_should_throw_and_updates_should_work",
        "test_invalid_columns_not_in_expression_should_throw",
        "test_invalid_filters_should_throw",
        "test_invalid_group_by_should_throw",
        "test_invalid_sorts_should_throw",
        "test_invalid_split_by_should_throw",
        "test_should_throw_on_first_invalid",
        "test_view_expand_two_column_only",
        "test_view_filter_string_is_none",
        "test_view_filter_string_is_not_none",
    )
} | {
    f"test_view_expression.{name}"
    for name in (
        "TestViewExpression::test_table_describe_config_error",
        "TestViewExpression::test_table_describe_expression_errors",
        "TestViewExpression::test_table_validate_expressions_with_errors",
        "TestViewExpression::test_view_expression_new_vocab_page",
        "TestViewExpression::test_view_expression_number",
        "TestViewExpression::test_view_expression_string_per_page",
        "TestViewExpression::test_view_regex_email_substr",
        "TestViewWindowRowNumber::test_view_window_row_number",
        "TestViewWindowRowNumber::test_view_window_row_number_partitioned",
    )
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    server = suite_server(Path(tmp_path_factory.mktemp("suite")))
    yield server
    server.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", FILES)
def test_the_suite_passes_through_the_consumer_as_it_does_in_process(server, name, tmp_path):
    local = run_suite([name], tmp_path / "local.xml", timeout=300)
    remote = run_suite([name], tmp_path / "remote.xml", server.ws_url, timeout=300)
    passed = {test for test, outcome in local.items() if outcome == "passed"}
    assert len(passed) > 40
    lost = {test for test in passed if remote.get(test) != "passed"}
    assert sorted(lost - GUARD_DIFFERENCES) == [], "these pass in-process but not through the consumer"
    assert Counter(remote.values())["passed"] == len(passed - GUARD_DIFFERENCES)
    assert server.proc.poll() is None
