"""Training: run configuration, the worker process, job control and vocabulary optimisation."""
