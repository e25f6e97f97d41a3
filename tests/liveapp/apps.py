from django.apps import AppConfig


class LiveAppConfig(AppConfig):
    name = "tests.liveapp"
    label = "liveapp"
    default_auto_field = "django.db.models.BigAutoField"
