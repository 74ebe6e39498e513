"""Child process of test_ray_driver_kill.py: a Ray extraction that logs each batch it receives and stores.

Run as ``python ray_driver_child.py DATA CACHE LOGDIR BATCH SLOW_S``. The hooks are
monkeypatches made here, in the child: the library has no test hooks.
"""

import json
import os
import sys
import time

import ray.data

from brainclust.engines import ray_data
from brainclust.features.cache import FeatureCache
from brainclust.features.extractor import FeatureExtractor
from brainclust.io.scan import scan

data, cache, logdir, batch, slow = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
received = open(os.path.join(logdir, "received.log"), "a", buffering=1)
stored = open(os.path.join(logdir, "stored.log"), "a", buffering=1)
real_iter, real_put = ray.data.Dataset.iter_batches, FeatureCache.put_many


def iter_batches(self, *args, **kwargs):
    for b in real_iter(self, *args, **kwargs):
        received.write(f"{len(b['key'])}\n")  # the driver holds this batch now
        yield b


def put_many(self, keys, features):
    real_put(self, keys, features)
    stored.write(f"{len(keys)}\n")  # committed


class Slow(ray_data.Embedder):
    def __call__(self, b):
        time.sleep(slow)
        return super().__call__(b)


ray.data.Dataset.iter_batches, FeatureCache.put_many, ray_data.Embedder = iter_batches, put_many, Slow
ex = FeatureExtractor(backbone="pixels@16", batch_size=batch, cache_dir=cache, num_workers=0, progress=False).fit()
info = ray_data.extract(ex, scan(data).records)
print(json.dumps({"computed": info["computed"], "failed": info["failed"]}))
