"""The one exception type users see: a message that names the problem, shown without a traceback."""


class HwlatError(Exception):
    """Bad input or an unusable environment, described in one line."""
