"""The write side in the database: products, the Unit of Work, the outbox and the inbox."""
