"""The database: the ``Storage`` facade over every feature's store (``storage``), the one ordered
set of migrations (``migrations``), secrets sealed at rest (``keystore``), online backup and
restore (``backup``), and their commands (``cli``: backup, restore; ``cli_keys``: keys)."""
