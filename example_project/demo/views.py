"""The demo's home page: superstore as a chart and a grid, and the live ticks table."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/home.html")
