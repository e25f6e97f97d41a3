"""``path("perspective/", include("django_perspective.urls"))`` adds the table pages."""

from django.urls import path

from . import views

app_name = "django_perspective"

urlpatterns = [
    path("", views.table_list, name="table_list"),
    path("<path:name>/", views.table_viewer, name="table_viewer"),
]
