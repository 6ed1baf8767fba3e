"""Failures a user can cause and fix. The CLI prints these as one line and exits 2; bugs keep their traceback."""


class UserError(Exception):
    """A mistake in the user's input: the message names the file/flag, what was expected, what was found, the fix."""


class ConfigError(UserError):
    """A configuration value or key is invalid."""


class DataError(UserError):
    """A data file is missing or does not match its release format."""


class WriteError(UserError):
    """A file could not be written (a full disk, a read-only or unwritable folder); the previous file is unchanged."""


class Interrupted(Exception):
    """Ctrl-C during training, after the resumable checkpoint was written; the CLI exits 130."""
    exit_code = 130
