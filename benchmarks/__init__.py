"""Benchmarks: scripts that print figures (not tests). Run each from the repository root with
`.venv/bin/python -m benchmarks.<name>`; see each module's docstring."""
