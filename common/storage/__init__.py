"""The SQL store shared by writers (who write it) and the API tier (who reads it).

``schema`` defines the tables for SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy Core;
``engine`` turns a storage URL from the settings into an Engine with the right driver.
"""
