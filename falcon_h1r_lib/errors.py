"""The one error a wrong config key, value, path or profile raises.

Its own module so that ``paths`` and ``config`` can both raise it without importing each other.
"""


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the key and where it came from."""
