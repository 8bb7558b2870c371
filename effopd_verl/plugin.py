"""Entry point of verl's ``verl.plugins`` group: verl imports this module when verl itself is imported.

It activates the CPU backend (:mod:`effopd_verl.cpu`) in processes started with ``VERL_PLATFORM=cpu``
and does nothing otherwise: a GPU run is unaffected.

verl hides a plugin that fails to import (it logs at debug level), so keep this import cheap and
test it explicitly.
"""

from effopd_verl.cpu.activation import activate, cpu_requested

if cpu_requested():
    activate()
