"""Engines: who runs the feature extraction of a run.

* ``local`` (the default): :class:`~brainclust.features.extractor.FeatureExtractor`
  in this process;
* ``ray``: :mod:`.ray_data`, the same stages on a Ray cluster (``pip install
  'brainclust[ray]'``). It fills the feature store; the rest of the run then
  reads every feature from the store exactly as the local engine does, so the
  outputs are the same.

Nothing here imports ray unless the ray engine is asked for.
"""

from __future__ import annotations

import ipaddress
import re

ENGINES = ("local", "ray")
#: What ``--ray-address`` accepts.
ADDRESS_FORMS = "HOST:PORT, ray://HOST:PORT or auto"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^(?P<client>ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|{_LABEL}(?:\.{_LABEL})*):(?P<port>[0-9]{{1,5}})\Z")


def parse_address(address: str) -> tuple[str, int, bool] | None:
    """``(host, port, is_client)`` of a ``--ray-address``; ``None`` for ``auto``.

    Raises
    ------
    ParameterError
        Anything but :data:`ADDRESS_FORMS` (a port from 1 to 65535; an IPv6 host in brackets).
    """
    from brainclust.errors import ParameterError

    if address == "auto":
        return None
    m = _ADDRESS.match(address) if isinstance(address, str) else None
    bad = ParameterError(f"--ray-address: expected {ADDRESS_FORMS}, got {address!r}")
    if m is None or not 1 <= int(m.group("port")) <= 65535:
        raise bad
    host = m.group("host")
    if host.startswith("["):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise bad from None
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise bad from None
    return host, int(m.group("port")), bool(m.group("client"))


def check_engine(engine: str, address: str | None = None) -> None:
    """``--engine`` is one of :data:`ENGINES`; ``--ray-address`` only goes with ``ray`` and is well formed."""
    from brainclust.errors import ParameterError

    if engine not in ENGINES:
        raise ParameterError(f"--engine: must be one of {', '.join(ENGINES)}, got '{engine}'")
    if address is not None and engine != "ray":
        raise ParameterError("--ray-address: only with --engine ray")
    if address is not None:
        parse_address(address)
