"""The one error a wrong config key, value, path or profile raises.

Its own module so that ``paths`` and ``config`` can both raise it without importing each other.
"""


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the key and where it came from."""


class MissingRun(ConfigError):
    """A stage's outputs are not there yet (its notebook has not run); the message names the file and the notebook."""
