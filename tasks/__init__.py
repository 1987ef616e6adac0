"""Prefect tasks shared by the journeys, over data functions that take a session and never commit."""
