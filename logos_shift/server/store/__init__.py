"""Storage: the database, its schema and migrations, and every query the server makes."""
