"""The command line: `allocation` commands come in here; `run` and `api` start the rest."""
