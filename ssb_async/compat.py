"""The one place ssb_async reaches below ophyd-async's public API, and why.

- **A put the IOC refuses must fail** (ophyd-async 0.21, aioca 2.1). ``SignalW.set``
  runs its put inside stamina's retry block (retrying timeouts only). aioca raises a
  refused put (``ECA_PUTFAIL``) as ``CANothing``, which is *falsy* by design (aioca's
  ``throw=False`` results test false); the retry block keeps the exception in a
  ``concurrent.futures.Future``, whose ``result()`` re-raises only a truthy exception. So
  ``await signal.set(value)`` on a refused put completes as a success. Puts whose answer
  matters go through :func:`answered_put`, which calls the signal's backend directly and
  raises :class:`PutRefused` (truthy). tests/test_upstream_internals.py fails when the
  retry block stops swallowing a falsy exception (then ``signal.set`` will do).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ophyd_async.core import SignalW


class PutRefused(RuntimeError):
    """The IOC failed the put; the message names the PV and the IOC's status."""


async def answered_put(signal: SignalW[Any], value: Any, timeout: float | None) -> None:
    """Put ``value`` with completion; a refusal raises :class:`PutRefused`, no answer
    within ``timeout`` s (None: as long as the IOC takes) raises TimeoutError."""
    backend = signal._connector.backend  # ophyd-async: the signal's transport
    try:
        await asyncio.wait_for(backend.put(value), timeout)
    except TimeoutError:
        raise TimeoutError(f"{signal.source}: no answer within {timeout:g} s") from None
    except Exception as ex:
        if not bool(ex):  # aioca's CANothing: falsy, and the put was refused
            raise PutRefused(f"{signal.source}: the IOC refused the put ({ex!r})") from ex
        raise
