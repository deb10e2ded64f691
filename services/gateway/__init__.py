"""The REST gateway (FastAPI): the only part of the platform reachable from outside."""
