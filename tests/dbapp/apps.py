from django.apps import AppConfig


class DBAppConfig(AppConfig):
    name = "tests.dbapp"
    label = "dbapp"
