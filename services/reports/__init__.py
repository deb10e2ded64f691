"""Results history and asynchronous PDF/JSON reports (gRPC, PostgreSQL, RabbitMQ)."""
