"""Set-up and demo scripts: services for `make run` and `make test`, the demo load."""
