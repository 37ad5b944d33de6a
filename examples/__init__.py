"""Runnable examples; importable as packages so the tests can serve them."""
