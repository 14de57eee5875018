"""The benchmark harness behind bench/run.py, one module per job (see bench/README.md)."""
