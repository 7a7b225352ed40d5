"""``python -m qoima`` runs the CLI."""

from qoima.cli.main import main

if __name__ == "__main__":  # worker processes import this module again (spawn)
    main()
