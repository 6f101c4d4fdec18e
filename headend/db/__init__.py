"""The database: the ``Storage`` facade over every feature's store (``storage``), the one ordered
set of migrations (``migrations``), secrets sealed at rest (``keystore``), online backup and
restore (``backup``), monthly partitions on PostgreSQL (``partitions``), retiring billed months
(``retention``), and their commands (``cli``: backup, restore, db; ``cli_keys``: keys)."""
