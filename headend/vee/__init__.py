"""VEE: validation, estimation and editing of meter readings.

Pure logic over plain data (``config``, ``registers``, ``rules``, ``estimate``,
``profile``, ``edit``) plus a thin engine (``engine.run_vee``) that reads and
writes through the small storage interface ``engine.VeeStore`` documented
there. Energy is integer Wh everywhere in this package; time is integer epoch
seconds, and ``now`` is always an argument.
"""


class VeeError(ValueError):
    """Bad input to the VEE (unknown meter, bad edit, ...); ``field`` names what was wrong."""

    def __init__(self, msg: str, field: str | None = None) -> None:
        super().__init__(msg)
        self.field = field


class VeeConfigError(VeeError):
    """A VEE configuration value is missing, unknown, of the wrong type or out of range."""
