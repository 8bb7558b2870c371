"""Entry point of verl's ``verl.plugins`` group: verl imports this module when verl itself is imported.

verl hides a plugin that fails to import (it logs at debug level), so keep this import cheap and
test it explicitly.
"""
