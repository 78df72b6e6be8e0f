"""The core: params, records, tracking, resume logs, task seeds. Imports nothing else of the
project."""
