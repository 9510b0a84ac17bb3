"""`python -m rawprobe` runs the command-line interface."""

from rawprobe.cli.app import main

if __name__ == "__main__":  # (importing the module, as documentation tools do, runs nothing)
    raise SystemExit(main())
