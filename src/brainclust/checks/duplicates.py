"""Exact and near duplicates: groups, representatives and the pairs behind them.

- **Exact** (``duplicate``): images with the same content hash of their decoded
  pixels; every image after the first of its hash (in scan order) is a duplicate.
- **Near** (``near_duplicate``): among distinct contents, pairs whose near-duplicate
  codes (:mod:`brainclust.checks.nearcode`) reach ``Thresholds.near_similarity``
  over the flips of one image and centred crops of either. Candidates come from a
  nearest-neighbour search (:mod:`brainclust.checks.neighbors`) on the codes
  projected to 128 principal components, queried with every flip and the
  centred crops of :data:`~brainclust.checks.nearcode.SEARCH_CROPS`; each candidate that can reach the
  threshold (:func:`upper_bounds`, from the dense searches on) is then verified on the full codes. A
  candidate that falls short but whose sizes allow one image to be a pixel window of the other (a one-sided
  crop) is given to ``windows`` (:func:`brainclust.checks.windows.window_similarity`), and kept at
  ``Thresholds.window_similarity``.
- **Groups**: in scan order, an image with a verified pair to an earlier group head
  joins that head (the most similar one), else the group of a direct member it pairs with,
  else heads a group (:func:`group`); exact copies join their first copy's group. A group's
  *representative* is its head, its first image in scan order, and ``duplicate_of`` of every
  other member is the head's path: at most two verified pairs away, never a long chain.

Memory is bounded by chunks: codes are made and projected ``chunk`` images at a
time, so the search holds ``n x 128`` float32 plus the index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from brainclust.checks import nearcode
from brainclust.checks.flags import Thresholds
from brainclust.checks.neighbors import Searcher
from brainclust.progress import bar

log = logging.getLogger(__name__)

#: Dimensions of the projected codes the search runs on (up to / above the exact-search size).
SEARCH_DIM = 128
SEARCH_DIM_LARGE = 64
#: Neighbours returned per query.
SEARCH_K = 8
#: A candidate is verified when its projected similarity reaches ``near_similarity`` minus this: on the exact path
#: (up to ``Thresholds.exact_max`` images) wide enough for one-sided crops of 4-5 % that only a pixel window confirms;
#: on the large path, where each candidate costs at 10^6 images, as tight as the plantings allow.
SEARCH_MARGIN = 0.10
SEARCH_MARGIN_LARGE = 0.06
#: Images per block of the verification; two blocks' codes are held (2 x 8,192 x 44 KB: 720 MB).
VERIFY_BLOCK = 8192
#: The verification's first filter (:func:`upper_bounds`): every variant code projected on this many principal
#: axes, plus its residual norm, held in float16 (2 x 11 x 65 bytes per image).
BOUND_DIM = 64
#: Rounding room: float16 moves a product of two stored short codes (norm <= 1) by at most 2 u + u^2 with
#: u = 2^-11 (9.8e-4); the float32 products and the basis's orthonormality add ~1e-5. A pair is dropped only
#: when its bound falls short of ``near_similarity`` by more than this.
BOUND_SLACK = 1.5e-3
#: The filter runs from this many candidate pairs per image on (below, making every image's codes once more for
#: it costs more than it saves).
BOUND_MIN_PAIRS_PER_IMAGE = 8


@dataclass
class DuplicateGroups:
    """Per image (row = scan order): ``representative`` (its group's head; own index when alone), the flags
    ``exact`` and ``near``, ``similarity`` (the best verified similarity of any pair it is in, its group's or
    not; NaN when none) and ``linked`` (the first image of everything it is joined to by exact copies and
    verified pairs, however long the chain: what ``leakage.csv`` groups by, so that no pair across splits is
    missed). ``pairs`` is (m, 2) int and ``pair_similarity`` (m,) of the verified near pairs."""

    representative: np.ndarray
    exact: np.ndarray
    near: np.ndarray
    similarity: np.ndarray
    pairs: np.ndarray
    pair_similarity: np.ndarray
    linked: np.ndarray

    def groups(self) -> list[list[int]]:
        """Groups of two or more images, each in scan order, ordered by their representative."""
        rep = np.asarray(self.representative, np.int64)
        members = np.flatnonzero(np.bincount(rep, minlength=len(rep))[rep] > 1)
        if not len(members):
            return []
        members = members[np.argsort(rep[members], kind="stable")]
        return [g.tolist() for g in np.split(members, np.flatnonzero(np.diff(rep[members])) + 1)]


def first_of_hash(hashes: list[str]) -> np.ndarray:
    """Index of the first image with the same hash (own index when first); empty hashes stay alone."""
    seen: dict[str, int] = {}
    out = np.arange(len(hashes))
    for i, h in enumerate(hashes):
        if h:
            out[i] = seen.setdefault(h, i)
    return out


def _projection(thumbs: np.ndarray, rows: np.ndarray, random_state: int,
                dim: int = SEARCH_DIM) -> np.ndarray | None:
    """(1024, d) principal axes of the codes of a seeded sample of ``rows``; None to search the full codes."""
    if len(rows) <= 2000:
        return None
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(rows, min(len(rows), 20000), replace=False))
    c = nearcode.codes(thumbs[sample])
    # uncentred: the codes are already mean-free per image, and inner products must survive the projection
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return np.ascontiguousarray(vt[:dim].T)


def _project(thumbs, rows, proj, chunk) -> np.ndarray:
    """The whole, unflipped codes of ``rows``, projected (the index's vectors)."""
    dim = nearcode.SIDE ** 2 if proj is None else proj.shape[1]
    out = np.empty((len(rows), dim), np.float32)
    for s in range(0, len(rows), chunk):
        c = nearcode.codes(thumbs[rows[s:s + chunk]])
        out[s:s + chunk] = c if proj is None else c @ proj
    return out


def near_pairs(thumbs: np.ndarray, rows: np.ndarray, thresholds: Thresholds, backend: str = "auto",
               random_state: int = 0, progress: bool | None = None,
               chunk: int = 8192,
               windows: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Verified near-duplicate pairs among ``rows`` (indices into ``thumbs``): ``(pairs (m, 2), sims (m,))``.

    Each pair is ordered ``(earlier, later)`` in scan order. ``windows`` maps candidate pairs that fall short
    of ``near_similarity`` to their window similarity (NaN: not compared); a pair kept by it carries that
    similarity.
    """
    rows = np.asarray(rows, np.int64)
    if len(rows) < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    large = backend == "faiss" or (backend == "auto" and len(rows) > thresholds.exact_max)
    proj = _projection(thumbs, rows, random_state, SEARCH_DIM_LARGE if large else SEARCH_DIM)
    base = _project(thumbs, rows, proj, chunk)
    searcher = Searcher(base, backend, thresholds.exact_max, random_state)
    k = min(SEARCH_K, len(rows))
    n_all = len(thumbs)
    keys = np.zeros(0, np.int64)  # a pair (i < j) is the key i * n_all + j: one int64, sorted like the pairs
    crops = nearcode.SEARCH_CROPS if searcher.exact else nearcode.SEARCH_CROPS_LARGE
    floor = thresholds.near_similarity - (SEARCH_MARGIN if searcher.exact else SEARCH_MARGIN_LARGE)
    pbar = bar(len(crops) * len(rows), "near-duplicate search", progress)
    for crop in crops:  # each chunk's codes once per crop; its flips are permutations of them
        found = [keys]
        for s in range(0, len(rows), chunk):
            c = nearcode.codes(thumbs[rows[s:s + chunk]], crop)
            for flip in nearcode.FLIPS:
                q = nearcode.flipped(c, flip)
                sims, idx = searcher.search(q if proj is None else q @ proj, k)
                a, b = np.nonzero((sims >= floor) & (idx >= 0))
                other = idx[a, b]
                keep = other != a + s
                if keep.any():
                    pa, pb = rows[a[keep] + s], rows[other[keep]]
                    found.append(np.minimum(pa, pb) * n_all + np.maximum(pa, pb))
            pbar.update(len(c))
        keys = np.unique(np.concatenate(found))  # a pass's repeats (flips, both ends) dropped as it ends
        del found
    pbar.close()
    if not len(keys):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    cand = np.stack(np.divmod(keys, n_all), 1)
    del keys
    sims = np.full(len(cand), np.nan, np.float32)  # NaN: its bound falls short, not verified
    live = np.ones(len(cand), bool)
    if len(cand) >= BOUND_MIN_PAIRS_PER_IMAGE * len(_nodes(cand, n_all)):
        live = upper_bounds(thumbs, cand, random_state=random_state, progress=progress) >= (
            thresholds.near_similarity - BOUND_SLACK)
    if live.any():
        sims[live] = _verify(thumbs, cand[live], progress=progress)
    ok = sims >= thresholds.near_similarity
    n_codes = int(ok.sum())
    if windows is not None and not ok.all():
        short = np.flatnonzero(~ok)
        score = windows(cand[short])
        up = score >= thresholds.window_similarity  # NaN: False
        sims[short[up]] = score[up]
        ok[short[up]] = True
    log.debug("near-duplicate search: %d candidate pairs (%d past their bound), %d verified (%d by their codes, "
             "%d as pixel windows)", len(cand), int(live.sum()), int(ok.sum()), n_codes, int(ok.sum()) - n_codes)
    return cand[ok], sims[ok]


def _verify(thumbs: np.ndarray, cand: np.ndarray, block: int = VERIFY_BLOCK,
            progress: bool | None = None) -> np.ndarray:
    """The code similarity of each candidate pair. The images are put in reverse Cuthill-McKee order
    of the candidate graph (copies of one picture, and the neighbours of one image, tend to land in
    the same or nearby blocks of ``block`` images) and the pairs are scored block pair by block
    pair: the nearer block's codes (:func:`nearcode.variant_codes`) are made once for all its pairs,
    the farther block's for the images its pairs need."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    if not len(cand):
        return np.zeros(0, np.float32)
    nodes = _nodes(cand, len(thumbs))  # int32 indices below: at 10^6 images tens of millions of pairs are held
    index = np.empty(len(thumbs), np.int32)
    index[nodes] = np.arange(len(nodes), dtype=np.int32)
    ends = index[cand]
    graph = coo_matrix((np.ones(len(cand), np.int8), (ends[:, 0], ends[:, 1])), shape=(len(nodes),) * 2).tocsr()
    del ends
    order = nodes[reverse_cuthill_mckee(graph, symmetric_mode=False)]  # image of each position
    del graph
    rank = index  # reused: the position of each image in that order
    rank[order] = np.arange(len(order), dtype=np.int32)
    pos = np.sort(rank[cand], axis=1)  # the pair's two positions, earlier first (the score is symmetric)
    first, second = pos[:, 0] // block, pos[:, 1] // block
    sims = np.empty(len(cand), np.float32)
    todo = np.lexsort((second, first))
    bounds = np.flatnonzero(np.diff(first[todo] * (len(order) // block + 1) + second[todo])) + 1
    pbar = bar(len(cand), "near-duplicate verification", progress, unit="pair")
    held = (-1, None)
    for rows in np.split(todo, bounds):
        a, b = int(first[rows[0]]), int(second[rows[0]])
        if held[0] != a:
            held = (a, nearcode.variant_codes(thumbs[order[a * block:(a + 1) * block]]))
        if b == a:
            other, at = held[1], pos[rows, 1] - a * block
        else:  # of a farther block, only the images these pairs need
            need, at = np.unique(pos[rows, 1], return_inverse=True)
            other = nearcode.variant_codes(thumbs[order[need]])
        sims[rows] = nearcode.variant_similarity(held[1], other, pos[rows, 0] - a * block, at)[0]
        pbar.update(len(rows))
    pbar.close()
    return sims


def _nodes(cand: np.ndarray, n: int) -> np.ndarray:
    """The images of the pairs ``cand`` (indices below ``n``), sorted: a mask, not a sort of every pair."""
    seen = np.zeros(n, bool)
    seen[cand.ravel()] = True
    return np.flatnonzero(seen)


def _bound_basis(thumbs: np.ndarray, nodes: np.ndarray, random_state: int, dim: int = BOUND_DIM) -> np.ndarray:
    """(1024, dim) orthonormal principal axes (uncentred) of the variant codes of a seeded sample of ``nodes``.
    Any orthonormal basis gives a true bound; these make it tight."""
    sample = np.sort(np.random.default_rng(random_state).choice(nodes, min(len(nodes), 500), replace=False))
    c = nearcode.variant_codes(thumbs[sample]).reshape(-1, nearcode.SIDE ** 2).astype(np.float64)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return np.ascontiguousarray(vt[:dim].T, dtype=np.float32)


def upper_bounds(thumbs: np.ndarray, cand: np.ndarray, basis: np.ndarray | None = None, random_state: int = 0,
                 chunk: int = 1024, progress: bool | None = None) -> np.ndarray:
    """An upper bound of each candidate pair's similarity as :func:`_verify` scores it. For unit codes ``u``,
    ``v`` and an orthonormal basis ``V`` (``basis``; default: :func:`_bound_basis` of a seeded sample),
    ``u.v = (V'u).(V'v) + r_u.r_v <= (V'u).(V'v) + |r_u| |r_v|`` (Cauchy-Schwarz on the parts ``r`` outside
    the basis): the product of the short codes ``(V'u, |r_u|)``. They are scored over the 60 trials like the
    codes (:func:`nearcode.variant_similarity`), so the best bound is at least the best similarity. Each
    image's codes are made once; the short codes are held in float16 (:data:`BOUND_SLACK`).

    Raises
    ------
    ValueError
        ``basis`` does not have orthonormal columns (the bound would not hold).
    """
    nodes = _nodes(cand, len(thumbs))
    if basis is None:
        basis = _bound_basis(thumbs, nodes, random_state)
    elif not np.allclose(basis.T @ basis, np.eye(basis.shape[1]), rtol=0, atol=1e-5):
        raise ValueError("upper_bounds: the basis must have orthonormal columns")
    index = np.empty(len(thumbs), np.int32)
    index[nodes] = np.arange(len(nodes), dtype=np.int32)
    n_var = len(nearcode.VERIFY_CROPS) + len(nearcode.FLIPS) - 1
    short = np.empty((len(nodes), n_var, basis.shape[1] + 1), np.float16)
    pbar = bar(len(nodes), "near-duplicate bounds", progress)
    for s in range(0, len(nodes), chunk):
        c = nearcode.variant_codes(thumbs[nodes[s:s + chunk]])
        p = c @ basis
        short[s:s + len(c), :, :-1] = p
        short[s:s + len(c), :, -1] = np.linalg.norm(c - p @ basis.T, axis=-1)  # no cancellation, unlike 1 - |p|^2
        pbar.update(len(c))
    pbar.close()
    return nearcode.variant_similarity(short, short, index[cand[:, 0]], index[cand[:, 1]])[0]


def group(hashes: list[str], pairs: np.ndarray, pair_sims: np.ndarray) -> DuplicateGroups:
    """Groups of exact copies (same non-empty hash) and near pairs; flag their members (module docstring).

    In scan order, a distinct image with a verified pair to an earlier group head joins the head it is most
    similar to; failing that, one with a pair to a direct member of a group joins that group (so a copy of an
    image that is itself a near copy of an earlier one is still found); otherwise it heads a group of its own.
    So every member is a near copy of its head or of a direct copy of it (``duplicate_of`` names the head),
    and a run of slices each like the next makes groups of a few, not one group of all (union-find's chains).
    Exact copies join the group of their first copy.
    """
    n = len(hashes)
    first = first_of_hash(hashes)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    a, b = first[pairs[:, 0]], first[pairs[:, 1]]
    keep = a != b
    lo, hi, sim = np.minimum(a, b)[keep], np.maximum(a, b)[keep], np.asarray(pair_sims, np.float64)[keep]
    order = np.lexsort((lo, -sim, hi))  # by the later image; the most similar first; the earliest on a tie
    lo, hi = lo[order].tolist(), hi[order].tolist()  # plain lists: a loop over millions of pairs stays fast
    head, depth = list(range(n)), [0] * n
    k = 0
    while k < len(hi):  # in scan order of the later image: every earlier group is settled
        i, to_head, to_member = hi[k], -1, -1
        while k < len(hi) and hi[k] == i:  # the first of each kind is the most similar (the earliest on a tie)
            j = lo[k]
            if to_head < 0 and depth[j] == 0:
                to_head = j
            elif to_member < 0 and depth[j] == 1:  # a member that is a direct copy of its head
                to_member = j
            k += 1
        if to_head >= 0 or to_member >= 0:
            j = to_head if to_head >= 0 else to_member
            head[i], depth[i] = head[j], depth[j] + 1
    representative = np.asarray(head, np.int64)[first]
    exact = first != np.arange(n)
    near = (representative != np.arange(n)) & ~exact
    similarity = np.full(n, -np.inf, np.float32)
    np.maximum.at(similarity, pairs.ravel(), np.repeat(np.asarray(pair_sims, np.float32), 2))
    similarity[np.isneginf(similarity)] = np.nan
    similarity[exact] = 1.0
    return DuplicateGroups(representative, exact, near, similarity, pairs, np.asarray(pair_sims, np.float32),
                           linked_first(first, pairs))


def linked_first(first: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Per image, the first image (scan order) of its connected component under exact copies (``first``) and
    verified ``pairs`` (scipy's ``connected_components``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(first)
    rows = np.concatenate([np.arange(n), pairs[:, 0]])
    cols = np.concatenate([first, pairs[:, 1]])
    _, comp = connected_components(coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n)),
                                   directed=False)
    low = np.full(comp.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(low, comp, np.arange(n))
    return low[comp]
