"""SQL plumbing shared by every package that persists (``license_store``, ``etrust``): engines
for SQLite and PostgreSQL, transactions, the declarative base and column types."""
