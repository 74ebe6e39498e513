"""A finished run folder to things to look at; reads only the run folder and never imports torch.

* :mod:`.run` - the run folder read back (:class:`~.run.RunOutputs`);
* :mod:`.build` - the HTML report, one function per section;
* :mod:`.tables`, :mod:`.geometry`, :mod:`.thumbnails`, :mod:`.figures` - what the sections need;
* :mod:`.export` - one folder per cluster with its images.
"""
