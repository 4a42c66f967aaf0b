"""Integration examples: Flask, Django, and a pytest plugin (each run by a test)."""
