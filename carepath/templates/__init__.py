"""Message templates (Jinja2), one file per message and language: `<name>.<lang>.txt.j2`."""
