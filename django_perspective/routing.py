"""Websocket routes: include ``websocket_urlpatterns`` in your ``asgi.py`` URLRouter."""

from django.urls import path

from .consumers import PerspectiveConsumer

websocket_urlpatterns = [
    path("ws/perspective/", PerspectiveConsumer.as_asgi(), name="perspective"),
]
