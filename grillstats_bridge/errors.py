"""The root of the bridge's own exceptions; each feature defines its errors beside itself."""


class GrillstatsError(Exception):
    """Something the user can act on; its message is one line and never holds a secret."""


class UsageError(GrillstatsError):
    """A command was asked for something that cannot be done (unknown user, bad argument...)."""
