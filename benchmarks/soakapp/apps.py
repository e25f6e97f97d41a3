from django.apps import AppConfig


class SoakAppConfig(AppConfig):
    name = "benchmarks.soakapp"
    label = "soakapp"
