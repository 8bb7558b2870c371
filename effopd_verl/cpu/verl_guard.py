"""The version check every wrapper of a verl private API goes through before it touches verl."""

from __future__ import annotations

from effopd_verl.integration.verl_version import SUPPORTED_VERL, installed_verl

__all__ = ["SUPPORTED_VERL", "require_verl"]


def require_verl(what: str, found: str | None = None) -> None:
    """Raise ``RuntimeError`` unless the installed verl is exactly ``SUPPORTED_VERL``.

    ``what`` names the verl internal being wrapped, so the message says what would break;
    ``found`` overrides the detected version (for tests).
    """
    found = installed_verl() if found is None else found
    if found != SUPPORTED_VERL:
        raise RuntimeError(
            f"effopd-verl's CPU backend wraps {what}, a private part of verl {SUPPORTED_VERL}; "
            f"found verl {found or '(not installed)'}. Install verl=={SUPPORTED_VERL}, or re-check this "
            f"wrapper against the new release before allowing it."
        )
