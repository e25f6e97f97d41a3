from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from django_perspective.health import health
from example_project.demo.views import home

urlpatterns = [
    path("admin/", admin.site.urls),
    # Sign-in for everyone, not only staff: accounts/login/ and accounts/logout/ (POST).
    path("accounts/", include("django.contrib.auth.urls")),
    path("health/", health, name="health"),
    path("perspective/", include("django_perspective.urls")),
    path("", home, name="home"),
]
# DEBUG only: serves what collectstatic has not collected (the app's files, the wheel's bundle).
urlpatterns += staticfiles_urlpatterns()
