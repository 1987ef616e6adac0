"""`python -m cli`: the `carepath` command, run from the project root."""

from cli.commands import main

raise SystemExit(main())
