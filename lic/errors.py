"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class LicError(Exception):
    """A user-facing failure: bad input, wrong model, missing tool. The message is the whole story."""
