"""The devnet's one exception type."""


class DevnetError(Exception):
    """An expected devnet failure (missing binary, busy port, dead process), worded for the user."""
