"""All SQL: migrations, and one repository module per table group."""
