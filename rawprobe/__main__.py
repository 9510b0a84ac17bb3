"""`python -m rawprobe` runs the command-line interface."""

from rawprobe.cli.app import main

raise SystemExit(main())
