"""A staticfiles finder for the browser bundle inside the installed perspective-python wheel.

The wheel ships ``perspective-anywidget.js`` (viewer, datagrid, every chart plugin, the wasm
inlined) and its CSS, always the same version as the engine. Serving them through
staticfiles means ``collectstatic``, ``ManifestStaticFilesStorage``, whitenoise and CDNs
work with no node toolchain and no copy of the bundle in this repository::

    STATICFILES_FINDERS = [
        "django.contrib.staticfiles.finders.FileSystemFinder",
        "django.contrib.staticfiles.finders.AppDirectoriesFinder",
        "django_perspective.finders.PerspectiveFinder",
    ]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from django.contrib.staticfiles import utils
from django.contrib.staticfiles.finders import BaseFinder, searched_locations
from django.core.checks import CheckMessage, Error
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage

PREFIX = "django_perspective/perspective"
BUNDLE = "perspective-anywidget.js"
STYLESHEET = "perspective-anywidget.css"
FILES = (BUNDLE, STYLESHEET)
BUNDLE_PATH = f"{PREFIX}/{BUNDLE}"
STYLESHEET_PATH = f"{PREFIX}/{STYLESHEET}"

# What perspective-django.js relies on: the viewer element class exposes the wasm module
# that holds the websocket ``Client``.
REQUIRED_MARKERS = ("__wasm_module__", "perspective-viewer")

# The wheel's bundle names a source map it does not ship; ManifestStaticFilesStorage would
# fail collectstatic trying to hash that missing file.
_SOURCE_MAP = re.compile(rb"\n//# sourceMappingURL=[^\n]*\s*$")


def bundle_dir() -> Path:
    """The wheel's static directory, wherever perspective-python is installed."""
    return Path(str(resources.files("perspective") / "widget" / "static"))


class BundleStorage(FileSystemStorage):
    """The wheel's static directory, read-only, minus the dangling source map comment."""

    def open(self, name: str, mode: str = "rb") -> File:
        if name != BUNDLE:
            return super().open(name, mode)
        with super().open(name, "rb") as original:
            content = _SOURCE_MAP.sub(b"\n", original.read())
        return ContentFile(content, name=name)


class PerspectiveFinder(BaseFinder):
    """Finds ``django_perspective/perspective/perspective-anywidget.{js,css}`` in the wheel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.storage = BundleStorage(location=bundle_dir())
        self.storage.prefix = PREFIX
        super().__init__(*args, **kwargs)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        """Nothing here: ``checks.check_browser_assets`` reports a missing bundle once."""
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> str | list[str]:
        if kwargs:
            find_all = self._check_deprecated_find_param(find_all=find_all, **kwargs)
        location = self.storage.location
        if location not in searched_locations:
            searched_locations.append(location)
        prefix, _, name = path.rpartition("/")
        if prefix == PREFIX and name in FILES and self.storage.exists(name):
            match = self.storage.path(name)
            return [match] if find_all else match
        return []

    def list(self, ignore_patterns: list[str] | None) -> Iterator[tuple[str, FileSystemStorage]]:
        for name in FILES:
            if self.storage.exists(name) and not utils.matches_patterns(
                name, ignore_patterns or []
            ):
                yield name, self.storage


def bundle_errors() -> list[CheckMessage]:
    """Why the wheel's bundle cannot serve ``perspective-django.js``, if it cannot."""
    try:
        directory = bundle_dir()
    except ModuleNotFoundError:
        return [
            Error(
                "perspective-python is not installed, so there is no browser bundle to serve.",
                hint="pip install 'perspective-python>=5.6,<5.7'.",
                id="django_perspective.E010",
            )
        ]
    errors: list[CheckMessage] = []
    for name in FILES:
        if not (directory / name).is_file():
            errors.append(
                Error(
                    f"The perspective-python wheel has no {name} in {directory}.",
                    hint="Reinstall perspective-python (5.6.x), or set "
                    "PERSPECTIVE['ASSETS_URL'] to a directory that serves both files.",
                    id="django_perspective.E010",
                )
            )
    bundle = directory / BUNDLE
    if bundle.is_file():
        text = bundle.read_bytes()
        missing = [m for m in REQUIRED_MARKERS if m.encode() not in text]
        if missing:
            errors.append(
                Error(
                    f"{bundle} does not look like the bundle perspective-django.js "
                    f"expects: it lacks {', '.join(missing)}.",
                    hint="This perspective-python version changed its browser bundle; "
                    "install the version pinned in django-perspective's requirements.",
                    id="django_perspective.E011",
                )
            )
    return errors
