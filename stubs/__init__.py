"""Stand-ins for outside services, used by tests/ and bench/ (never by Carepath at run time)."""
