"""Teardown calls for contract suites whose factories open files or processes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest


class Teardown:
    """Calls registered with ``on_teardown`` run when the test ends, the last first."""

    @pytest.fixture(autouse=True)
    def _teardown(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            self._teardown_stack = stack
            yield

    def on_teardown(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` when the current test ends (e.g. close what a factory opened)."""
        self._teardown_stack.callback(fn)
