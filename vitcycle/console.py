"""How the `vitcycle` commands show warnings: one line each, no source location."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

from tqdm.auto import tqdm

from vitcycle.errors import VitcycleWarning


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Show VitcycleWarnings as one `prefix: warning: ...` line on stderr each (for the CLI)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, VitcycleWarning):
            tqdm.write(f"{prefix}: warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    original = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always", VitcycleWarning)
        warnings.showwarning = show
        yield
