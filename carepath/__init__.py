"""Carepath: customer-service automation as Prefect flows over a SQLAlchemy data model."""
