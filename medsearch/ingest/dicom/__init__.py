"""DICOM files as medsearch rows: finding them (files.py), their pixels as a radiologist sees them (pixels.py), and
their headers without protected health information (headers.py)."""
