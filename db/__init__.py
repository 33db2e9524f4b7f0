"""The application's business SQL: its migration series, and one repository module per table group."""

from millrace import MigrationSeries

#: db/migrations/NNNN_*.sql, applied after the runtime's own series
MIGRATIONS = MigrationSeries("app", "db")
