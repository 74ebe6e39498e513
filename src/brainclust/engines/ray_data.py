"""The Ray Data engine: a run's feature extraction spread over the machines of a Ray cluster.

Ray Data's offline batch-inference pattern, on the inputs of the same scan as
the local engine::

    driver: scan -> the records whose features are not in the store yet (path, content hash, frame...)
      ray.data.from_items(rows)                               one row per image; never a glob inside Ray
      .map_batches(decode_batch)                              tasks: decode + pre-process (CPU)
      .map_batches(Embedder, compute=ActorPoolStrategy(n))    actors: the model loaded once per actor,
                                                              a GPU each when the cluster has them
      -> batches (key, features, error) streamed to the driver, which writes them to the feature store
         keyed by content hash (so order does not matter, and the store needs no shared file system)

The driver then runs the rest of the run (PCA, clustering, scores, outputs)
as the local engine does, reading every feature from the store, so
``assignments.csv`` is the same. Above the exact tree's limit the two-stage
tree fits its micro-clusters on a sample and :func:`nearest_on_ray` runs the
pass that assigns every row, as ``map_batches``. An image that fails to decode is not written
to the store; the local pass meets it again and skips it with its reason,
exactly as the local engine does.

Faults: Ray Data's defaults restart an embedding actor that dies and retry
its batch (``tests/engines/test_ray_engine.py`` kills one), and retry failed decode
tasks; a node that dies mid-run is survived the same way
(``tests/engines/test_ray_two_nodes.py``). The driver takes one batch of
``batch_size`` rows at a time (no prefetch) and commits it to the store in its
own transaction before it takes the next, so a killed driver loses at most the
one batch it held; a rerun computes only the missing images. A cluster that
fails for good is an :class:`~brainclust.errors.EngineError` (one line); what
was stored stays.

Cluster: with ``address=None`` a local Ray starts with this machine's cores;
``"auto"`` or ``"ray://HOST:10001"``/``"HOST:6379"`` joins a running cluster
(``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on the
others). Joining is checked first, within :data:`CONNECT_TIMEOUT_S` seconds
(:func:`check_reachable`): an address nobody answers on is one line, not minutes
of retries. The input images must be on storage every node sees at the same
path (NFS, a shared volume); the feature store stays on the driver.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from brainclust.engines import parse_address
from brainclust.errors import EngineError, ParameterError
from brainclust.io.scan import ImageRecord
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

#: Seconds within which joining a cluster (``--ray-address``) succeeds or fails with one line.
CONNECT_TIMEOUT_S = 20.0
#: Of those, seconds for the TCP check of ``HOST:PORT``.
TCP_TIMEOUT_S = 5.0


def import_ray():
    """``ray`` and ``ray.data``, or a one-line ParameterError naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ParameterError("--engine ray: Ray is not installed; pip install 'brainclust[ray]'") from None
    return ray


def _first_line(text: str, limit: int = 240) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.split(":", 1)[0].endswith(("Error", "Exception"))]
    line = (errors or lines or [""])[-1]
    return line if len(line) <= limit else line[:limit - 3] + "..."


_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)(?:\([\w]+\))?: ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cause(exc: BaseException) -> str:
    """``Type: message`` of the error behind Ray's wrappers, in one line.

    Ray carries a remote error as text (a traceback inside ``RayTaskError``); its first
    ``SomeError: message`` line that is not Ray's own is the user's error.
    """
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines()]
    found = [ln for ln in lines if _EXC_LINE.match(ln)]
    mine = [ln for ln in found if not ln.startswith("ray.")]
    line = (mine or found or [f"{type(exc).__name__}: {_first_line(exc)}"])[0]
    return line if len(line) <= 240 else line[:237] + "..."


def _quiet_ray_data() -> None:
    """Silence Ray Data's console handler: its lines (execution plans, statistics, a failed task's
    stack) would flood the command's output, and the engine reports failures itself in one line.
    Its log file in the Ray session folder (``logs/ray-data``) keeps everything."""
    for handler in logging.getLogger("ray.data").handlers:
        ours = type(handler).__module__.startswith("ray.")  # never another library's handler (pytest's, the app's)
        if ours and isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
                and "File" not in type(handler).__name__:
            handler.setLevel(logging.CRITICAL + 1)


_PROBE = ("import sys, ray\n"
          "ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, configure_logging=False)\n"
          "print(int(ray.cluster_resources().get('CPU', 0)))\n")


#: The logger of Ray's notice that a local cluster starts with token authentication.
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"

#: Addresses this process has joined a cluster at (checked once per process).
_REACHABLE: set[str] = set()


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail with one line, within ``timeout_s``, unless a Ray cluster at ``address`` can be joined
    (an address that passed once in this process is not probed again).

    ``HOST:PORT`` and ``ray://HOST:PORT`` are first checked with a TCP connection (refused, unknown
    host, no answer); then a short-lived process joins the cluster and leaves. Ray itself would retry
    an unreachable address for minutes, printing warnings, so it is only called once this passed.

    Raises
    ------
    ParameterError
        A malformed address.
    EngineError
        Nothing to join there (the reason in one line).
    """
    if address in _REACHABLE:
        return
    start = time.monotonic()
    parsed = parse_address(address)
    if parsed is not None:
        host, port, _ = parsed
        try:
            with socket.create_connection((host, port), timeout=min(TCP_TIMEOUT_S, timeout_s)):
                pass
        except socket.gaierror:
            raise EngineError(f"--ray-address {address}: unknown host '{host}'") from None
        except TimeoutError:
            raise EngineError(f"--ray-address {address}: no answer within {TCP_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise EngineError(f"--ray-address {address}: cannot connect ({exc.strerror or exc}); is "
                              "`ray start --head` running there?") from None
    left = max(1.0, timeout_s - (time.monotonic() - start))
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                               timeout=left, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EngineError(f"--ray-address {address}: no Ray cluster answered within {timeout_s:g} s") from None
    if probe.returncode != 0:
        raise EngineError(f"--ray-address {address}: cannot join the Ray cluster "
                          f"({_first_line(probe.stderr) or f'exit status {probe.returncode}'})")
    _REACHABLE.add(address)


def connect(address: str | None = None):
    """Start a local Ray (``address=None``) or join a running cluster; return the ``ray`` module.

    Raises
    ------
    ParameterError
        Ray is not installed, or the address is malformed.
    EngineError
        The cluster cannot be joined (checked first by :func:`check_reachable`) or a local Ray cannot start.
    """
    ray = import_ray()
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address is not None:
            check_reachable(address)
        try:
            if address is None:
                # a local Ray we start keeps Ray's default, token authentication; its notice of that (how to opt
                # out) is Ray's advice to a cluster's operator, not to the user of one command: logged as ours
                logging.getLogger(RAY_AUTH_LOGGER).setLevel(logging.ERROR)
                ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
                log.info("ray engine: a local Ray on this machine (token authentication, Ray's default)")
            else:
                ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = f"--ray-address {address}: cannot join the Ray cluster" if address else \
                "--engine ray: cannot start a local Ray"
            raise EngineError(f"{where} ({type(exc).__name__}: {_first_line(exc)})") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    _quiet_ray_data()
    return ray


def cluster_info(ray) -> dict:
    """The cluster's size as recorded in the manifest."""
    res = ray.cluster_resources()
    return {"nodes": len([n for n in ray.nodes() if n.get("Alive")]), "cpus": int(res.get("CPU", 0)),
            "gpus": int(res.get("GPU", 0))}


def pool_size(info: dict) -> tuple[int, float]:
    """Embedding actors and GPUs per actor, from the cluster's resources.

    One actor per GPU when the cluster has GPUs; otherwise one per two CPUs
    (decoding tasks need the others), at least one. Sizing the pool up front
    avoids Ray's slow autoscaling ramp-up.
    """
    if info["gpus"] > 0:
        return info["gpus"], 1.0
    return max(1, info["cpus"] // 2), 0.0


#: Record fields that hold file names: carried as bytes (os.fsencode), since a name need not be UTF-8.
NAME_FIELDS = ("path", "abspath", "name", "label")


def rows_of(records: Sequence[ImageRecord]) -> list[dict]:
    """The manifest rows Ray carries: every field of each record but its metadata, names as bytes."""
    return [{k: (os.fsencode(v) if k in NAME_FIELDS else v) for k, v in asdict(r).items() if k != "meta"}
            for r in records]


def records_of(batch: dict) -> list[ImageRecord]:
    """Rows of a numpy batch back to ImageRecords (the inverse of :func:`rows_of`)."""
    def value(field: str, v):
        v = v.item() if isinstance(v, np.generic) else v
        return os.fsdecode(v) if field in NAME_FIELDS else v

    fields = [f for f in ImageRecord.__dataclass_fields__ if f in batch]
    return [ImageRecord(**{f: value(f, batch[f][i]) for f in fields}) for i in range(len(batch["path"]))]


def decode_batch(batch: dict, extractor) -> dict:
    """Decode and pre-process one batch (a Ray task): model inputs, or features for array backbones."""
    records = records_of(batch)
    inputs, errors = extractor.decode(records)
    return {"key": np.asarray([r.key for r in records]), "x": inputs, "error": np.asarray(errors, dtype=object)}


class Embedder:
    """A Ray actor: the extractor's model, loaded once, embeds the decoded batches."""

    def __init__(self, extractor):
        self.extractor = extractor

    def __call__(self, batch: dict) -> dict:
        errors = [str(e) for e in batch["error"]]
        ok = [i for i, e in enumerate(errors) if not e]
        x = np.asarray(batch["x"])
        feats = np.zeros((len(errors), self.extractor.spec_.dim), np.float32)
        if ok:
            feats[ok] = self.extractor.embed(x[ok])
        return {"key": batch["key"], "features": feats, "error": np.asarray(errors, dtype=object)}


def extract(extractor, records: Sequence[ImageRecord], address: str | None = None) -> dict:
    """Fill the feature store with the features of ``records`` on Ray; return what the manifest records.

    ``extractor`` is a fitted FeatureExtractor or FusedExtractor (each block of a
    fusion runs as its own pass). Records already in the store are not sent.

    Raises
    ------
    EngineError
        The cluster cannot be joined, or fails during the pass (the features stored so far are kept).
    """
    ray = connect(address)
    info = {"engine": "ray", "address": address or "local", **cluster_info(ray)}
    actors, gpus = pool_size(info)
    info.update(actors=actors, gpus_per_actor=gpus, computed=0, failed=0)
    blocks = [ex for ex, _ in extractor.blocks_] if hasattr(extractor, "blocks_") else [extractor]
    for block in blocks:
        todo = block.missing(records)
        if not todo:
            continue
        try:
            out = run_pass(ray, block, [records[i] for i in todo], actors, gpus)
        except ray.exceptions.RayError as exc:
            raise EngineError(f"--engine ray: the cluster failed during the extraction ({_cause(exc)}); "
                              "the features stored so far are kept, rerun to resume") from None
        info["computed"] += sum(1 for e in out.values() if not e)
        info["failed"] += sum(1 for e in out.values() if e)
    log.info("ray engine: %s computed on %s, %s", count_text(info["computed"], "feature"),
             count_text(info["nodes"], "node"), count_text(info["actors"], "actor"))
    return info


def store_batch(store, out: dict, status: dict[str, str]) -> None:
    """Commit one batch of results (``key``, ``features``, ``error``) to the store in one transaction."""
    keys = [str(k) for k in out["key"]]
    errors = [str(e or "") for e in out["error"]]
    ok = [i for i, e in enumerate(errors) if not e]
    if ok:
        store.put_many([keys[i] for i in ok], np.asarray(out["features"])[ok])
    status.update(zip(keys, errors))


def run_pass(ray, extractor, records: list[ImageRecord], actors: int, gpus: float) -> dict[str, str]:
    """One Ray Data pass over ``records``; ``{key: error or ""}``.

    The driver takes one batch of ``extractor.batch_size`` rows at a time (no prefetch) and
    commits it to the store before taking the next: a killed driver loses at most that batch.
    """
    batch = max(1, min(extractor.batch_size, len(records)))
    blocks = max(1, min(len(records) // batch, 4 * max(actors, 1) * 8))
    ds = ray.data.from_items(rows_of(records), override_num_blocks=blocks)
    ds = ds.map_batches(decode_batch, fn_kwargs={"extractor": extractor}, batch_size=batch,
                        batch_format="numpy")
    ds = ds.map_batches(Embedder, fn_constructor_kwargs={"extractor": extractor},
                        batch_size=batch, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus)
    status: dict[str, str] = {}
    store = extractor.open_store()  # one store for the pass, one transaction per batch
    try:
        for out in ds.iter_batches(batch_size=batch, batch_format="numpy", prefetch_batches=0):
            store_batch(store, out, status)
    finally:
        store.close()
    return status


# -- the clustering's assignment pass -----------------------------------------------------
#: Rows per assignment task.
ASSIGN_CHUNK = 65536


def _nearest_batch(batch: dict, rows_ref, centres: np.ndarray) -> dict:
    """One chunk of rows (``start``..``stop``) of the shared matrix -> the index of each row's nearest centre."""
    import ray

    from brainclust.cluster.twostage import nearest

    U = ray.get(rows_ref[0])
    starts, stops = batch["start"], batch["stop"]
    idx = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])
    lab = np.concatenate([nearest(centres, U[a:b]) for a, b in zip(starts, stops)])
    return {"i": idx, "label": lab}


def nearest_on_ray(centres: np.ndarray, U: np.ndarray, address: str | None = None) -> np.ndarray:
    """:func:`brainclust.cluster.twostage.nearest` of every row of ``U``, as Ray Data ``map_batches``.

    The fit of the micro-clusters runs on a sample on the driver; this is the pass over all
    rows. ``U`` goes to the object store once; each task reads its chunk and returns
    ``(row index, label)`` pairs, put back in place by index (Ray keeps no order). The
    result equals the local pass exactly (the same code on the same rows).
    """
    ray = connect(address)
    n = len(U)
    bounds = [{"start": s, "stop": min(s + ASSIGN_CHUNK, n)} for s in range(0, n, ASSIGN_CHUNK)]
    rows_ref = [ray.put(np.ascontiguousarray(U))]  # in a list: passed by reference, read in the task
    ds = ray.data.from_items(bounds, override_num_blocks=len(bounds))
    ds = ds.map_batches(_nearest_batch, fn_kwargs={"rows_ref": rows_ref, "centres": centres}, batch_size=1,
                        batch_format="numpy")
    out = np.full(n, -1, dtype=np.int64)
    try:
        for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
            out[b["i"]] = b["label"]
    except ray.exceptions.RayError as exc:
        raise EngineError(f"--engine ray: the cluster failed during the assignment pass ({_cause(exc)})") from None
    if (out < 0).any():  # pragma: no cover - Ray lost rows without raising
        raise EngineError("--engine ray: the assignment pass returned fewer rows than it was given; rerun")
    return out

