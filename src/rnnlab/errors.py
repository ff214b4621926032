"""The exceptions rnnlab raises on purpose. The CLI turns them into one line, no traceback."""


class RnnlabError(Exception):
    """Base class of every error rnnlab raises deliberately."""


class ConfigError(RnnlabError, ValueError):
    """A bad setting: unknown name, non-positive size, unknown config key. The message starts
    with the name of the bad field, e.g. ``hidden: must be a positive integer, got 0``."""


class StoreError(RnnlabError):
    """The results folder cannot be used: unwritable, corrupted or truncated files."""


class DamagedFileError(StoreError):
    """A stored file that cannot be trusted: truncated, unparsable, or not matching its
    checksum. ``path`` names it, ``reason`` says why; the message is one line."""

    def __init__(self, path, reason: str | None = None):
        from .store.files import corrupted_message
        self.path, self.reason = path, reason
        super().__init__(corrupted_message([path], reason))

    def __reduce__(self):
        return type(self), (self.path, self.reason)


class RnnlabWarning(UserWarning):
    """Base class of the warnings rnnlab gives on purpose (the CLI prints each as one line)."""


class StoreWarning(RnnlabWarning, RuntimeWarning):
    """Something in the results store was not as expected and was dealt with, e.g. a damaged
    file moved to quarantine to be recomputed."""


class PluginError(RnnlabError):
    """A plugin could not be loaded: the message names the file (or module) and the error.
    The CLI prints it on one line and exits with status 2."""
