from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from django_perspective.health import health
from example_project.demo.views import home

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("perspective/", include("django_perspective.urls")),
    path("", home, name="home"),
]
# DEBUG only: serves the app's static files and the wheel's bundle under plain daphne too.
urlpatterns += staticfiles_urlpatterns()
