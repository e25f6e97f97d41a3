from django.urls import path

from tests.urls import urlpatterns as base_urlpatterns

from .views import evil_page, saved_page, viewer_page

urlpatterns = [
    *base_urlpatterns,
    path("browser/evil/", evil_page),
    path("browser/viewer/<str:name>/", viewer_page),
    path("browser/saved/<str:name>/<str:view>/", saved_page),
]
