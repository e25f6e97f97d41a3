from django.core.checks import run_checks
from django.test import override_settings


def ids(**settings) -> set[str]:
    with override_settings(**settings):
        return {message.id for message in run_checks() if message.id.startswith("django_perspective.")}


def test_the_demo_settings_pass():
    assert not {i for i in ids() if ".E" in i or ".W00" in i}


def test_settings_must_be_a_dict():
    assert "django_perspective.E001" in ids(PERSPECTIVE=["MAX_REQUEST_SIZE"])


def test_unknown_keys_are_named():
    with override_settings(PERSPECTIVE={"MAX_REQUEST_SIZ": 5}):
        [error] = [m for m in run_checks() if m.id == "django_perspective.E002"]
    assert "'MAX_REQUEST_SIZ'" in error.msg


def test_wrong_types_and_negative_numbers_are_errors():
    assert "django_perspective.E003" in ids(PERSPECTIVE={"POLL_INTERVAL": "fast"})
    assert "django_perspective.E003" in ids(PERSPECTIVE={"MAX_REQUEST_SIZE": -1})
    assert "django_perspective.E003" in ids(PERSPECTIVE={"MAX_REQUEST_SIZE": True})


def test_daphne_default_message_limit_warns():
    from django.conf import settings

    with override_settings():
        del settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE
        assert "django_perspective.W001" in {m.id for m in run_checks()}


def test_trusted_proxies_must_be_addresses_networks_or_unix():
    assert not {"django_perspective.E030", "django_perspective.E031"} & ids(
        PERSPECTIVE={"TRUSTED_PROXIES": ["127.0.0.1", "10.0.0.0/8", "::1", "unix"], "PROXY_HEADER": "X-Real-IP"}
    )
    assert "django_perspective.E030" in ids(PERSPECTIVE={"TRUSTED_PROXIES": ["nginx.local"]})
    assert "django_perspective.E030" in ids(PERSPECTIVE={"TRUSTED_PROXIES": [10]})
    assert "django_perspective.E003" in ids(PERSPECTIVE={"TRUSTED_PROXIES": "127.0.0.1"})
    assert "django_perspective.E031" in ids(PERSPECTIVE={"PROXY_HEADER": " "})
