"""The test suite; a package so tests can import shared helpers as ``tests.support``."""
