"""``python -m agent`` runs the ``memagent`` command (no PATH setup needed)."""

from agent.cli import main

main(prog_name="memagent")
