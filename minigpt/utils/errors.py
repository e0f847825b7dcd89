"""The one exception type for bad configuration or bad data, raised before any training starts."""


class ConfigError(ValueError):
    """A configuration or data problem, described in one sentence: the field, the value and the fix."""
