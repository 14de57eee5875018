"""The load benchmark: bench/run.py, its harness, and the apps it serves beside the API."""
