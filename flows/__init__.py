"""Carepath's flows: each reads like the journey it implements."""
