from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjangoPerspectiveConfig(AppConfig):
    name = "django_perspective"
    verbose_name = "Perspective"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, conf, publishing  # noqa: F401  (system checks, registry signals)

        # Every process imports every app's table module, in INSTALLED_APPS order, so each
        # daphne worker knows the same code-defined tables before its first connection.
        autodiscover_modules(conf.get("TABLES_MODULE"))
