"""Driver of test_ray_two_nodes.py: ``brainclust run`` with an embedding actor that logs where it ran.

Run as ``python ray_cluster_driver.py LOG SLOW_S -- BRAINCLUST ARGS...``. Each embedded batch
appends ``<node id> <rows>`` to LOG after sleeping SLOW_S seconds (so the test can kill a node
mid-extraction). The class is defined here, in ``__main__``, so Ray ships it to the nodes by value;
the library has no test hooks.
"""

import sys
import time

from brainclust.cli import main
from brainclust.engines import ray_data

LOG, SLOW = sys.argv[1], float(sys.argv[2])


class Logged(ray_data.Embedder):
    def __call__(self, batch):
        import ray

        time.sleep(SLOW)
        out = super().__call__(batch)
        with open(LOG, "a") as fh:
            fh.write(f"{ray.get_runtime_context().get_node_id()} {len(batch['key'])}\n")
        return out


ray_data.Embedder = Logged
sys.exit(main(sys.argv[sys.argv.index("--") + 1:]))
