"""Helpers shared by the command modules: consoles and user-facing error handling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an FfeError into a one-line message and exit code 2, without a traceback."""
    from ffe.domain.errors import FfeError

    try:
        yield
    except FfeError as exc:
        # The message may quote user input such as "[x]": print it as text, never as markup.
        message = Text("error: ", style="bold red").append(str(exc))
        err_console.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
