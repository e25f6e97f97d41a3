from django.urls import path

from tests.urls import urlpatterns as test_urlpatterns

from .views import orders, stream

urlpatterns = [
    *test_urlpatterns,
    path("live/orders/", orders),
    path("live/stream/", stream),
]
