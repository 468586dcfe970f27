"""Contract tests: each capture rule on every entry point registered in ``drivers.py``."""
