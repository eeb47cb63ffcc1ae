"""The one exception type for bad user input.

Every stage raises `UserError` when the input (a file, a key, a value) is wrong; the CLI turns it
into a message and exit code 2. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: says where (file, line or key), the value seen, and how to fix it.

    `problems` holds one line per problem so that config loading can report every problem at once
    instead of making the user fix them one run at a time.
    """

    exit_code = 2

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
