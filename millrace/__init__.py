"""Millrace: the runtime that turns arq into a background-job platform with PostgreSQL records."""
