"""The demo web service (FastAPI) and its small status page."""
