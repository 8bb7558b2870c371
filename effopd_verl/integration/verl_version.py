"""The one verl version this plugin's wrappers of verl internals were written and tested against."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

SUPPORTED_VERL = "0.9.1"


def installed_verl() -> str | None:
    try:
        return version("verl")
    except PackageNotFoundError:
        return None


def require_supported_verl(what: str = "effopd-verl", found: str | None = None) -> None:
    """Raise a clear error unless verl ``SUPPORTED_VERL`` is installed (``found``: the installed version)."""
    found = installed_verl() if found is None else found
    if found != SUPPORTED_VERL:
        raise RuntimeError(
            f"{what} needs verl=={SUPPORTED_VERL}, found {found or 'no verl'}: it extends verl internals that "
            f"change between releases. Install it with: pip install 'verl=={SUPPORTED_VERL}'"
        )
