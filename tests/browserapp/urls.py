from django.urls import path

from tests.urls import urlpatterns as base_urlpatterns

from .views import evil_page

urlpatterns = [*base_urlpatterns, path("browser/evil/", evil_page)]
