"""VEE: validation, estimation and editing of meter readings.

Pure logic over plain data (``config``, ``registers``, ``rules``, ``estimate``,
``profile``, ``edit``) plus a thin engine (``engine.run_vee``) that reads and
writes through the small storage interface ``engine.VeeStore`` documented
there. Energy is integer Wh everywhere in this package; time is integer epoch
seconds, and ``now`` is always an argument.
"""

from headend.errors import VeeConfigError, VeeError  # noqa: F401
