"""The relational database (PostgreSQL, SQLite): engines, tables, statements, migrations."""
