"""A finished run folder to things to look at; reads only the run folder and never imports torch.

* :mod:`.run` - the run folder read back (:class:`~.run.RunOutputs`);
* :mod:`.build` - the HTML report, one function per section;
* :mod:`.tables`, :mod:`.geometry`, :mod:`.thumbnails`, :mod:`.figures`, :mod:`.associations` - what the
  sections need;
* :mod:`.explorer`, :mod:`.columns` - the report's explorer: what the file holds, every column classified;
* :mod:`.mapcoords` - 2-D map places of every image (``compute_map``, ``map.npy``);
* :mod:`.server` (with :mod:`.viewdata`, :mod:`.viewquery`, :mod:`.thumbcache`) - ``brainclust view``;
* :mod:`.export` - one folder per cluster with its images.
"""
