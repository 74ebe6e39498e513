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
_ADDRESS = re.compile(rf"^(?P<client>ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|{_LABEL}(?:\.{_LABEL})*)"
                      r":(?P<port>[0-9]{1,5})\Z")


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


class EngineHooks:
    """What an engine changes in a model's fit: ``prefill(extractor, records)`` fills the feature store
    before the local pass reads it, ``assign_all`` runs the two-stage tree's assignment pass, and
    :meth:`info` is the manifest's ``engine`` section. The local engine has neither hook."""

    def __init__(self, engine: str = "local", address: str | None = None):
        check_engine(engine, address)
        self.engine, self.address = engine, address
        self._info: dict | None = None
        self.prefill = self._prefill if engine == "ray" else None
        self.assign_all = None
        if engine == "ray":
            import functools

            from brainclust.engines import ray_data

            self.assign_all = functools.partial(ray_data.nearest_on_ray, address=address)

    def check(self) -> None:
        """Before any work: Ray is installed and, with ``--ray-address``, a cluster answers there
        (:func:`~brainclust.engines.ray_data.check_reachable`: one line within a bounded time)."""
        if self.engine != "ray":
            return
        from brainclust.engines import ray_data

        ray_data.import_ray()
        if self.address is not None:
            ray_data.check_reachable(self.address)

    def _prefill(self, extractor, records) -> None:
        from brainclust.engines import ray_data

        self._info = ray_data.extract(extractor, records, self.address)

    def info(self) -> dict:
        return self._info if self._info is not None else {"engine": self.engine}
