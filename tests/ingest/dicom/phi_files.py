"""DICOM files carrying protected health information, written by the header and PHI tests from real BUSI images:
uncompressed MONOCHROME2 8-bit, with a patient name, birth date, address, accession number, institution and
free-text comments beside the identifiers and the few fields a store keeps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom import uid as U
from pydicom.dataset import Dataset, FileMetaDataset

from ...conftest import SHARED_DATA

BUSI = SHARED_DATA / "breast-busi"


def busi_pixels(n: int, size: int = 96) -> np.ndarray:
    """Real ultrasound pixels (uint8 grey), image ``n`` of BUSI's benign folder, cropped to ``size``."""
    path = sorted(p for p in (BUSI / "benign").iterdir() if p.suffix == ".png")[n]
    return np.asarray(Image.open(path).convert("L"))[32:32 + size, 32:32 + size].copy()


def phi(patient: int) -> dict:
    """Identifying values of patient ``patient``: none of them may reach a store."""
    return {"PatientName": f"DOE^JANE{patient}", "PatientBirthDate": f"1963041{patient}",
            "PatientAddress": f"{patient}2 Sample Street, Exampletown",
            "AccessionNumber": f"ACC9981{patient}", "InstitutionName": "Saint Example Hospital",
            "InstitutionAddress": "1 Infirmary Road", "ReferringPhysicianName": "WHO^DOCTOR",
            "ImageComments": f"lesion upper outer quadrant, patient {patient} anxious",
            "StudyDescription": "US BREAST LEFT TARGETED", "SeriesDescription": "TRANSVERSE SWEEP"}


def write_dicom(path: Path, pixels: np.ndarray, *, patient_id: str | None, study: str, series: str,
                **tags) -> Path:
    """``pixels`` as an explicit-VR little-endian MONOCHROME2 8-bit ultrasound image with the given tags."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = U.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = U.UltrasoundImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = U.generate_uid()
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Modality, ds.BodyPartExamined, ds.Manufacturer = "US", "BREAST", "ACME Imaging"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [0.1, 0.1]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def study_uid(patient: int, study: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.{patient + 1}{study}7731"


def series_uid(patient: int, study: int, series: int = 1) -> str:
    return f"1.2.826.0.1.3680043.8.498.{patient + 1}{study}7731.{series}"


def patient_id(patient: int) -> str:
    return f"MRN-00477{patient}"


def phi_dataset(root: Path, patients: int = 4, per_patient: int = 2, *, missing_id: int = 0) -> list[Path]:
    """Class folders ``benign``/``malignant`` (by patient parity) of DICOM files without extension, each patient
    ``per_patient`` images of one study, carrying PHI; the last ``missing_id`` files have no PatientID."""
    paths, n = [], 0
    for p in range(patients):
        cls = "malignant" if p % 2 else "benign"
        for j in range(per_patient):
            paths.append(write_dicom(root / cls / f"IM{p}{j:03d}", busi_pixels(n), patient_id=patient_id(p),
                                     study=study_uid(p, 1), series=series_uid(p, 1),
                                     ViewPosition="AP" if j % 2 else "PA", ImageLaterality="L" if p < 2 else "R",
                                     **phi(p)))
            n += 1
    for path in paths[len(paths) - missing_id:]:
        ds = pydicom.dcmread(path)
        del ds.PatientID
        ds.save_as(path, enforce_file_format=True)
    return paths
