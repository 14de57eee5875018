"""The read models in the database: view rows written with each change, and the queries."""
