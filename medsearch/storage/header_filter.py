"""``--where`` conditions on the stored DICOM header fields, shared by `query` (the neighbours it may return),
`eval` (the rows it scores) and `serve` (a filter of the page and the API).

A condition is ``FIELD=VALUE``, ``FIELD=V1,V2`` (any of them) or ``FIELD!=VALUE`` (none of them); several
conditions must all hold. Field names and values match without regard to case (DICOM writes 'PA', a user may type
'pa'); an empty value matches rows whose header lacks the field (``ViewPosition=``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..display import printable
from ..errors import MedsearchError
from .schema import HEADER_FIELDS


@dataclass(frozen=True)
class Condition:
    field: str                  # as the user wrote it; resolved to a stored column by ``where_mask``
    values: tuple[str, ...]
    negate: bool = False

    def __str__(self) -> str:
        return f"{self.field}{'!=' if self.negate else '='}{','.join(self.values)}"


def parse_where(expressions, flag: str = "--where") -> tuple[Condition, ...]:
    """``['ViewPosition=PA', 'Modality!=CT']`` -> conditions; a malformed one is a one-line error."""
    out = []
    for text in expressions or ():
        field, op, value = str(text).partition("=")
        negate = field.endswith("!")
        field = field[:-1] if negate else field
        if not op or not field.strip():
            raise MedsearchError(f"{flag} '{printable(str(text))[:80]}' is not a condition: write FIELD=VALUE, "
                                 f"FIELD=V1,V2 or FIELD!=VALUE (fields: {', '.join(HEADER_FIELDS)})")
        out.append(Condition(field.strip(), tuple(v.strip() for v in value.split(",")), negate))
    return tuple(out)


def where_mask(data, conditions, flag: str = "--where") -> np.ndarray:
    """Rows of ``data`` that meet every condition (bool (n,)); all rows when there are none. A store without
    header fields, or a field it does not hold, is a one-line error naming the fields there are."""
    keep = np.ones(len(data), dtype=bool)
    if not conditions:
        return keep
    header = getattr(data, "header", None)
    fields = header.fields() if header is not None else []
    if not fields:
        raise MedsearchError(f"{flag}: this store holds no DICOM header fields (it was not indexed from DICOM "
                             "files): drop " + flag)
    by_name = {f.lower(): f for f in fields}
    for c in conditions:
        name = by_name.get(c.field.lower())
        if name is None:
            raise MedsearchError(f"{flag}: the store holds no field '{printable(c.field)[:40]}'; its fields are "
                                 f"{', '.join(fields)}")
        column = np.char.lower(np.asarray(header.columns[name], dtype=str)) if len(data) else np.array([], str)
        hit = np.isin(column, [v.lower() for v in c.values])
        keep &= ~hit if c.negate else hit
    return keep


def describe(conditions) -> str:
    """'ViewPosition=PA and Modality=CR,DX' (empty without conditions)."""
    return " and ".join(str(c) for c in conditions)
