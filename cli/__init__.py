"""The operators' command line; it sits above flows/ and tasks/ (the `carepath` script reaches it through
carepath/launcher.py)."""
