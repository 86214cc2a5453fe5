"""Exceptions that the CLI turns into one actionable line."""


class FerEdgeError(Exception):
    """Base class: the message is shown to the user as it is, so it must say what to fix."""

    exit_code = 2  # what the command line exits with (cliframe.run_command)


class DataError(FerEdgeError):
    """The dataset is missing, unreadable or laid out wrongly."""


class ModelError(FerEdgeError):
    """A model file is missing, corrupt, or has no usable contract."""


class SourceError(FerEdgeError):
    """A camera, video, image or stream cannot be opened."""


class ConfigError(FerEdgeError):
    """An option has a value that cannot work."""
