"""dicom layer."""
