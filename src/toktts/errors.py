"""The one exception type for user errors: the CLI prints its message on one line and exits 2."""


class TokttsError(Exception):
    """A problem with the user's input, files or environment, with a message saying what to do."""
