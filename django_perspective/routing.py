"""Websocket routes: include ``websocket_urlpatterns`` in your ``asgi.py`` URLRouter."""

from django.urls import path

from .consumers import PerspectiveConsumer
from .virtual import DatabaseConsumer

websocket_urlpatterns = [
    path("ws/perspective/", PerspectiveConsumer.as_asgi(), name="perspective"),
    # Database tables (databases.py): their own path, since their features differ.
    path("ws/perspective/db/", DatabaseConsumer.as_asgi(), name="perspective-database"),
]
