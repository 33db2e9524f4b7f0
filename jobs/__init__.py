"""The job families, one module per family; `jobs.worker` holds the arq entry points."""
