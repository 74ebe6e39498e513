"""Data checks: flag duplicates, near-duplicates, non-MRI, blank, noise, tiny and non-image DICOM inputs, and list
split leakage."""
