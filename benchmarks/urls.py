from django.urls import path

from .bench_app.views import feed

urlpatterns = [path("feed", feed)]
