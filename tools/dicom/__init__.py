"""Results as DICOM: CT series written from volumes, Segmentation and SR objects for a PACS."""
