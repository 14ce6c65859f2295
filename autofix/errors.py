"""Errors that reach users: one root class, and input problems that name file, line and field.

A user-facing input (spec, policy file, CLI flag, metric stream) that is wrong produces
:class:`InputError`, holding every :class:`Problem` found at once, so a user fixes a file in
one pass instead of one relaunch per typo (the Prometheus ``promtool check rules`` habit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AutofixError", "InputError", "Problem", "RunFailed"]


class AutofixError(Exception):
    """Root of every error autofix raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: where it is, which field, and what was expected."""

    file: str
    line: int | None
    field: str
    message: str
    context: str = ""  # e.g. "policy 'lower-lr'", prefixed to the field when set

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        subject = ": ".join(part for part in (self.context, self.field) if part)
        return f"{where}: {subject}: {self.message}" if subject else f"{where}: {self.message}"


@dataclass
class InputError(AutofixError):
    """Bad user input: CLI exits 2 and prints one line per problem, never a traceback."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class RunFailed(AutofixError):
    """The run could not go on for a reason outside the user's training (Ray, the cluster, a
    crash of autofix itself): one line for the terminal, and ``log``, the file that holds the
    full traceback. The CLI prints the line and the path (the traceback itself only with ``-v``)
    and exits 3."""

    def __init__(self, message: str, log: str | None = None) -> None:
        super().__init__(message)
        self.log = log
