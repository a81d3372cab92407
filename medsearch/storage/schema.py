"""The store's fixed names and codes (docs/STORE.md, "Schema"): file names, format version, row states,
tasks, layouts and the index_* attributes. Shared by the reader, the writer, the validation and the journal."""
from __future__ import annotations

import re

FORMAT = "medsearch-store"
FORMAT_VERSION = 2  # 1: one whole store.h5; 2: segments + manifest (still reads 1)
STORE_FILE = "store.h5"
JOURNAL_DIR = ".journal"
LOCK_FILE = ".lock"
PENDING, EMBEDDED, ZERO_FILLED, SKIPPED = 0, 1, 2, 3
FINISHED = (EMBEDDED, ZERO_FILLED, SKIPPED)  # the states a journal part may record
STATE_NAMES = {PENDING: "pending", EMBEDDED: "embedded", ZERO_FILLED: "zero-filled", SKIPPED: "skipped"}
TASKS = ("binary", "multiclass", "multilabel")
LAYOUTS = ("folders", "csv", "npz", "dicom")  # dicom: a plain tree or DICOMDIR export, labelled by --label-tag
RECALL_TARGET = 0.95               # recall@10 an approximate index is tuned to reach at build time
DEFAULT_MAX_INDEX_MEMORY = 1 << 30  # bytes; leaves a query process at 1M x 1280 room under 2 GB in all
INDEX_ATTRS = ("index_file", "index_type", "index_sha256", "index_ntotal", "index_built")
# More classes than any labelling scheme in use; a label column with this many values holds ids, not classes.
MAX_LABEL_NAMES = 100_000
REMOVED_REASON = "removed: no longer in the dataset"
REBUILD = "move it aside and rebuild it with `medsearch index`"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# DICOM headers (issue 18): the only header values a store may hold. Identifiers are keyed hashes (HMAC-SHA256 with a
# secret kept outside the store), never the raw values; the fields are non-identifying acquisition facts. Anything
# else (names, dates, addresses, accession numbers, institutions, free text) is refused by validation.
HEADER_IDS = ("study", "series")
HEADER_FIELDS = ("Modality", "BodyPartExamined", "ViewPosition", "Laterality", "Manufacturer", "Rows", "Columns",
                 "PixelSpacing")
HEADER_COLUMNS = HEADER_IDS + HEADER_FIELDS
ID_HASH_HEX = 32                   # hex digits kept of an identifier's HMAC-SHA256 (128 bits)
MAX_HEADER_VALUE = 64              # characters of a stored field (DICOM LO is at most 64)
NO_PATIENT_GROUP = "no-patient-id:"  # group prefix of a row whose header has no PatientID: it is its own group
