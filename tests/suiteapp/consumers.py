"""A test-only consumer whose clients may create tables and use the ones they created.

Perspective's own client test suite creates, writes and deletes tables; ``client_tables``
lets a connection do that with its own tables - and only those - while every other rule
of the guard stays on.
"""

from __future__ import annotations

from django_perspective.consumers import PerspectiveConsumer


class WritableConsumer(PerspectiveConsumer):
    client_tables = True
