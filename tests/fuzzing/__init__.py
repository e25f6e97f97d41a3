"""A structured fuzzer for request frames, generated from the request schema.

``frames`` builds hypothesis strategies from ``schema.KINDS``; ``harness`` sends what they
draw through the guard and a real engine in-process; ``python -m tests.fuzzing`` runs it
by hand for long, in a child process, and keeps the frames that took the child down.
"""
