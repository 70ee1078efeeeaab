"""From a path or a PACS to a de-identified ``Study``: DICOM, NIfTI, zip, series choice, PACS."""
