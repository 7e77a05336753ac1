"""The store shared by writers (who write it) and the API tier (who reads it).

``query`` describes a search in storage-neutral terms; ``sql`` is the SQL backend (SQLite,
PostgreSQL, MySQL/MariaDB).
"""
