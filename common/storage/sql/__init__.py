"""The SQL backend of the store: SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy Core.

``store`` is the backend the entry points name (``SqlStore``: the seam's Protocols, errors
translated); ``reading`` and ``writing`` execute statements that ``selects`` and ``upserts`` build
(pure builders, unit-tested by compiling them per dialect); ``schema`` defines the tables and
``engine`` turns a storage URL into an Engine with the right driver and creates or upgrades the
schema.
"""
