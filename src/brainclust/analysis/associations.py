"""What do these clusters follow? The ranking moved to :mod:`brainclust.cluster.associations` (rank 2, so that
a run writes ``associations.csv`` beside ``assignments.csv``); this name stays an alias of that module (the
same module object, so ``brainclust.analysis.associations.X`` is ``brainclust.cluster.associations.X``)."""

from __future__ import annotations

import sys

from brainclust.cluster import associations as implementation

sys.modules[__name__] = implementation
