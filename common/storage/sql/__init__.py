"""The SQL backend of the store: SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy Core.

``schema`` defines the tables, ``engine`` turns a storage URL into an Engine with the right driver
and creates or upgrades the schema, ``selects`` builds the statements of a search and ``upserts``
those of the writers (pure builders, unit-tested by compiling them per dialect).
"""
