class UserError(Exception):
    """A mistake in what the user asked for (bad path, bad option, bad config).

    The CLI prints its message without a traceback and exits with code 2."""
