from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjangoPerspectiveConfig(AppConfig):
    name = "django_perspective"
    verbose_name = "Perspective"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, conf, engine, memory, presence, publishing  # noqa: F401  (system checks, registry signals)
        from .tables import declared

        # Before any engine thread exists: the arena limit only binds threads made later.
        memory.tune(conf.get("RETAIN_FREED_MEMORY"))

        # The engine and presence import nothing above them: the modules that know which
        # tables exist hand them their hooks here.
        engine.on_start(declared.host_on_start)
        engine.on_start(publishing.host_published)
        engine.on_missing_table(declared.host)
        presence.while_connected(declared.start_streams, declared.stop_streams)
        # Every process imports every app's table module, in INSTALLED_APPS order, so each
        # daphne worker knows the same code-defined tables before its first connection.
        autodiscover_modules(conf.get("TABLES_MODULE"))
