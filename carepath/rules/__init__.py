"""Business rules as plain functions: no Prefect, no session, no HTTP. Each has table-driven tests."""
