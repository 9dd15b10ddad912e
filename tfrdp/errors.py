"""The one exception type whose message is meant for the user, as a single line."""


class TfrdpError(Exception):
    """A problem the user can fix (bad input, missing model, corrupted file)."""
