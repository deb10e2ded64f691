"""Users, tokens and usage counts (gRPC, PostgreSQL)."""
