"""The exceptions rnnlab raises on purpose. The CLI turns them into one line, no traceback."""


class RnnlabError(Exception):
    """Base class of every error rnnlab raises deliberately."""


class ConfigError(RnnlabError, ValueError):
    """A bad setting: unknown name, non-positive size, unknown config key. The message starts
    with the name of the bad field, e.g. ``hidden: must be a positive integer, got 0``."""


class StoreError(RnnlabError):
    """The results folder cannot be used: unwritable, corrupted or truncated files."""


class PluginError(RnnlabError):
    """A plugin could not be loaded: the message names the file (or module) and the error.
    The CLI prints it on one line and exits with status 2."""
