"""``python -m durable`` runs the command line."""

from durable.cli import main

main(prog_name="durable")
