"""What every stage shares: the step protocol and its parameter rules (:mod:`.params`) and the
array helpers (:mod:`.arrays`: unit rows, seeded samples, exact cosine neighbours, the sampled silhouette).

Nothing here imports another brainclust stage; every stage may import it.
"""
