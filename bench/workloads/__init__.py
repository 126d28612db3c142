"""The workloads of bench/run.py, one module each (W1 to W5)."""
