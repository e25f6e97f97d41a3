from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    name = "benchmarks.bench_app"
    label = "bench_app"
