"""Input and output: atomic writes (:mod:`.atomic`), the scan of an input folder (:mod:`.scan`),
the DICOM and NIfTI readers (:mod:`.formats`) and the run folder's schema (:mod:`.outputs`)."""
