"""``python -m qoima`` runs the CLI."""

from qoima.cli.main import main

main()
