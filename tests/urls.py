from django.urls import path

from example_project.urls import urlpatterns as demo_urlpatterns
from tests.e2eapp.views import views_free

urlpatterns = [
    *demo_urlpatterns,
    path("e2e/views-free/<str:name>/", views_free),
]
