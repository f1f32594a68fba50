"""Errors an operator can act on.

Anything raised as an ``ApplianceError`` is printed as one line (no traceback) by the
command-line entry points and ends the command with a non-zero exit code.
"""


class ApplianceError(Exception):
    """A problem the operator can fix; the message says what and where."""


class ConfigError(ApplianceError):
    """A configuration file (site config or profile) is malformed or invalid.

    ``source`` names the file, ``field`` the dotted path of the offending key.
    """

    def __init__(self, source: str, field: str, problem: str):
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")
