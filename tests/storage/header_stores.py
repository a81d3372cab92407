"""Header columns added to any test store, as `index` writes them for DICOM rows: row i has ViewPosition PA (even)
or AP (odd), Modality CR, DX or MR (i % 3), Laterality L (i % 4 < 2) or R, and a hashed study of its own."""
from medsearch.storage.row_headers import RowHeaders
from medsearch.storage.store import read_store, write_store

IDS = {"hash": "HMAC-SHA256, 128 bits, hex", "key_check": "0123456789abcdef", "key": "test.id-key (beside the store)",
       "groups": "PatientID (keyed hash)"}


def view(i: int) -> str:
    return "PA" if i % 2 == 0 else "AP"


def modality(i: int) -> str:
    return ("CR", "DX", "MR")[i % 3]


def add_headers(out) -> None:
    """Give the store in ``out`` header columns (its index stays valid: the rows do not change)."""
    data = read_store(out)
    n = len(data)
    data.header = RowHeaders({"study": [f"{i:032x}" for i in range(n)], "Modality": [modality(i) for i in range(n)],
                              "ViewPosition": [view(i) for i in range(n)],
                              "Laterality": ["L" if i % 4 < 2 else "R" for i in range(n)]}, dict(IDS))
    write_store(data, out)
