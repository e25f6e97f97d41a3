"""Benchmarks: django-perspective against Perspective's own Tornado handler (``python -m benchmarks.run``)."""
