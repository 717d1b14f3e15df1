"""User-facing errors: one line that names the input and the problem."""


class GenemInputError(ValueError):
    """Bad input. ``str(err)`` is the one-line message the command line prints before exiting non-zero."""

    def __init__(self, source, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
