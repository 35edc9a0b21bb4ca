"""Helpers shared by the test suites: the SAM template as data (tables, key specs, routes)."""
