"""Reading and validating received DICOM headers. No I/O beyond the bytes handed in.

Lenient reading (modalities send odd data), strict refusal of what cannot be archived safely:
missing or malformed key UIDs, truncated data, absurd image sizes, runaway sequence nesting.
"""

from __future__ import annotations

import io
import re
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from qoima.dicom.attributes import INDEXED_ATTRIBUTES
from qoima.errors import InvalidDicom

TAG_PIXEL_DATA = 0x7FE00010
TAG_FLOAT_PIXEL_DATA = 0x7FE00008
TAG_DOUBLE_PIXEL_DATA = 0x7FE00009
_UID_SYNTAX = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DEFER_BYTES = 64 * 1024
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1431.1"  # Qoima's (under a pydicom-issued root)
IMPLEMENTATION_VERSION_NAME = "QOIMA_010"


@dataclass(frozen=True)
class ParsedInstance:
    """What the archive needs from one received instance: its UIDs and indexed values."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    values: dict[str, str | int | None]
    part10: bytes  # the received bytes with a File Meta header in front (added only if absent)


def _is_valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and bool(_UID_SYNTAX.match(value))


def _require_uid(values: dict[str, str | int | None], keyword: str) -> str:
    value = str(values.get(keyword) or "").strip().rstrip("\0")
    if not value:
        raise InvalidDicom(f"missing {keyword}")
    if not _is_valid_uid(value):
        raise InvalidDicom(f"{keyword} {value[:70]!r} is not a valid UID")
    return value


def _sequence_depth(ds: Dataset, limit: int, depth: int = 0) -> int:
    """Deepest sequence nesting; only sequence elements are converted (the rest stay raw)."""
    deepest = depth
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        vr = raw.VR
        if vr is None:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = "UN"
        # Undefined-length UN (private sequences in implicit VR) may hold items too.
        is_undefined_length = isinstance(raw, RawDataElement) and raw.length == 0xFFFFFFFF
        if vr != "SQ" and not (is_undefined_length and tag != TAG_PIXEL_DATA):
            continue
        if ds[tag].VR != "SQ":
            continue
        for item in ds[tag].value:
            deepest = max(deepest, _sequence_depth(item, limit, depth + 1))
            if deepest > limit:
                raise InvalidDicom(f"sequences nested deeper than {limit} levels")
    return deepest


def index_value(element: Any) -> str | int | None:
    """The index's form of one attribute value: str for text, int for numbers, None if empty."""
    if element is None or element == "":
        return None
    if isinstance(element, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in element)
    if isinstance(element, (int,)) and not isinstance(element, bool):
        return int(element)
    if isinstance(element, pydicom.valuerep.IS):
        return int(element)
    return str(element).strip()


# Looked up by tag, not keyword: Dataset.get(keyword) costs a dictionary search per call.
_INDEXED_TAGS = tuple((a.keyword, Tag(a.keyword)) for a in INDEXED_ATTRIBUTES)
# The one BaseTag object per tag that ``scan`` keys its elements with: a dictionary lookup
# with the same object skips BaseTag.__eq__, a Python call (about 90 per instance).
_TAG_KEYS: dict[int, BaseTag] = {int(tag): tag for _, tag in _INDEXED_TAGS}
# pydicom's text conversions (pydicom.values), by VR: the whole value right-stripped, then
# split (AE values also left-stripped); or split in the dataset's character set, each value
# right-stripped.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
_TEXT_VRS = frozenset({"LO", "SH", "UC"})
_INTEGER = re.compile(r" *[+-]?[0-9]+ *")
_NOT_CONVERTED = object()


def raw_strings(raw: RawDataElement, encoding: str | None) -> list[str] | None:
    """The string values pydicom reads from an undecoded element of one of those VRs (numbers
    not yet converted); None where pydicom must convert it (another VR, a deferred value,
    text in ISO 2022 code extensions or not decodable)."""
    vr, data = raw.VR, raw.value
    if data is None:
        return None
    try:
        if vr in _ASCII_VRS:
            parts = data.decode("iso8859").rstrip(" \x00").split("\\")
            return [part.strip() for part in parts] if vr == "AE" else parts
        if vr in _TEXT_VRS and encoding is not None:
            return [part.rstrip("\x00 ") for part in data.decode(encoding).split("\\")]
    except UnicodeDecodeError:
        return None
    return None


def simple_encoding(ds: Dataset) -> str | None:
    """The one Python codec that decodes ``ds``'s text, or None when it uses ISO 2022 code
    extensions (several character sets switched by escape sequences)."""
    charset = ds.get(0x00080005)
    encodings = ds._character_set
    if charset is not None and "2022" in str(charset.value):
        return None
    if isinstance(encodings, str):
        return encodings
    return encodings[0] if len(encodings) == 1 else None


def index_values(ds: Dataset) -> dict[str, str | int | None]:
    """The indexed attributes of ``ds`` in the index's form (see ``index_value``). Common
    elements of a header just read (explicit VR little endian text, US) are converted from
    their raw bytes here, as pydicom would convert them; the rest go through pydicom."""
    encoding = simple_encoding(ds)
    values: dict[str, str | int | None] = {}
    for keyword, tag in _INDEXED_TAGS:
        raw = ds._dict.get(tag)
        value: Any = None
        if raw is not None:
            value = _NOT_CONVERTED
            if isinstance(raw, RawDataElement) and raw.VR is not None and raw.is_little_endian:
                value = _raw_index_value(raw, encoding)
            if value is _NOT_CONVERTED:
                value = index_value(ds[tag].value)
        values[keyword] = value
    return values


def _raw_index_value(raw: RawDataElement, encoding: str | None) -> Any:
    if raw.VR == "US":
        data = raw.value
        if data is None or len(data) not in (0, 2):
            return _NOT_CONVERTED
        return struct.unpack("<H", data)[0] if data else None
    if raw.VR == "PN":
        return _raw_person_name(raw.value, encoding)
    parts = raw_strings(raw, encoding)
    if parts is None or raw.VR == "DS":  # pydicom re-formats each decimal
        return _NOT_CONVERTED
    if raw.VR == "IS":
        if len(parts) > 1:
            return _NOT_CONVERTED
        if not parts[0].strip():
            return None
        return int(parts[0]) if _INTEGER.fullmatch(parts[0]) else _NOT_CONVERTED
    return index_value(parts[0]) if len(parts) == 1 else "\\".join(parts)


# The fast reading of a Part 10 header (``scan``): what it keeps of the top-level dataset.
_SCANNED_TAGS = frozenset({0x00080005, 0x00280002, TAG_PIXEL_DATA, TAG_FLOAT_PIXEL_DATA,
                           TAG_DOUBLE_PIXEL_DATA} | {int(tag) for _, tag in _INDEXED_TAGS})
_PIXEL_TAGS = frozenset({TAG_PIXEL_DATA, TAG_FLOAT_PIXEL_DATA, TAG_DOUBLE_PIXEL_DATA})
_EXPLICIT_HEADER = struct.Struct("<HH2sH")
_IMPLICIT_HEADER = struct.Struct("<HHI")
_U32 = struct.Struct("<I")
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_EXPLICIT_LE_SYNTAXES = frozenset(
    str(uid) for uid in pydicom.uid.AllTransferSyntaxes
    if uid not in (pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian,
                   pydicom.uid.DeflatedExplicitVRLittleEndian)
    and uid.is_little_endian and not uid.is_implicit_VR)


class _NotPlain(Exception):
    """``scan`` leaves this header to pydicom."""


def scan(data: bytes, max_sequence_depth: int, *, whole_header: bool = False,
         complete: bool = True) -> Dataset | None:
    """The dataset of a Part 10 file, read as ``pydicom.dcmread`` would read it but keeping
    only the top-level elements that indexing and validation use, as raw elements (sequences
    are walked for their nesting depth, nothing else is converted). About three times cheaper
    than ``dcmread``, which builds every element. None unless the file is plainly well formed
    in explicit or implicit VR little endian: anything else (deflate, big endian, a truncated,
    odd or too deeply nested element) is left to pydicom, which reads or refuses it.

    ``whole_header``: every top-level element before the pixel data, as ``dcmread`` with
    ``stop_before_pixels`` reads it (a sequence kept as its raw bytes, which pydicom decodes
    when it is used; no value deferred). ``data`` may then be the start of a file only
    (``complete`` False): None when the pixel data does not start in it."""
    if data[128:132] != b"DICM":
        return None
    try:
        meta: dict[int, RawDataElement] = {}
        position = _elements(data, 132, len(data), True, 0, max_sequence_depth, meta,
                             meta_only=True)  # File Meta: always explicit VR little endian
        syntax_raw = meta.get(0x00020010)
        if not meta or syntax_raw is None or syntax_raw.value is None:
            return None
        syntax = syntax_raw.value.decode("ascii").rstrip("\0 ")
        if syntax == pydicom.uid.ImplicitVRLittleEndian:
            explicit = False
        elif syntax in _EXPLICIT_LE_SYNTAXES:
            explicit = True
        else:
            return None
        first_vr = data[position + 4:position + 6]
        if len(data) - position < 8 or (first_vr in _SHORT_VRS
                                        or first_vr in _LONG_VRS) is not explicit:
            return None  # pydicom would guess the VR encoding from the first element
        kept: dict[int, RawDataElement] = {}
        end = _elements(data, position, len(data), explicit, 0, max_sequence_depth, kept,
                        whole=whole_header)
    except (_NotPlain, struct.error, UnicodeDecodeError):
        return None
    if whole_header and not complete and end >= len(data):
        return None  # the header may go on past what was read
    if not kept:
        return None
    ds = Dataset(kept)
    ds.file_meta = FileMetaDataset(meta)
    ds.set_original_encoding(not explicit, True, ds._character_set)
    return ds


def _elements(data: bytes, position: int, end: int | None, explicit: bool, depth: int,
              limit: int, kept: dict[int, RawDataElement] | None, meta_only: bool = False,
              whole: bool = False) -> int:
    """Walk the elements from ``position`` to ``end`` (None: to an item delimiter), keeping
    wanted top-level ones in ``kept`` (``whole``: all of them, up to the pixel data); returns
    where the walk ended."""
    size = len(data)
    stop = size if end is None else end
    while position < stop:
        group, number, length = _IMPLICIT_HEADER.unpack_from(data, position)
        tag = group << 16 | number
        if meta_only and group != 2:
            return position
        if whole and tag in _PIXEL_TAGS:
            return position
        if tag == _ITEM_END and end is None:
            return position + 8
        if group == 0xFFFE:
            raise _NotPlain
        if explicit:
            vr_bytes = data[position + 4:position + 6]
            if vr_bytes in _LONG_VRS:
                length = _U32.unpack_from(data, position + 8)[0]
                value_at = position + 12
            elif vr_bytes in _SHORT_VRS:
                length = _EXPLICIT_HEADER.unpack_from(data, position)[3]
                value_at = position + 8
            else:
                raise _NotPlain
            vr: str | None = vr_bytes.decode("ascii")
            is_sequence = vr == "SQ"
        else:
            vr, value_at = None, position + 8
            try:
                is_sequence = dictionary_VR(tag) == "SQ"
            except KeyError:
                is_sequence = False
        if is_sequence:
            position = _items(data, value_at, None if length == _UNDEFINED else value_at + length,
                              explicit, depth + 1, limit)
            if whole and kept is not None:
                key = BaseTag(tag)
                kept[key] = RawDataElement(key, vr, length, data[value_at:position], value_at,
                                           not explicit, True, True, length == _UNDEFINED)
            continue
        if length == _UNDEFINED:
            if tag != TAG_PIXEL_DATA:
                raise _NotPlain  # an undefined-length UN may hold items: pydicom decides
            position = _fragments(data, value_at)
            value = None
        else:
            position = value_at + length
            if position > size:
                raise _NotPlain
            value = None if length > _DEFER_BYTES and not whole else data[value_at:position]
        if kept is not None and (meta_only or whole or tag in _SCANNED_TAGS):
            key = _TAG_KEYS.get(tag) or BaseTag(tag)
            kept[key] = RawDataElement(key, vr, length, value, value_at, not explicit, True,
                                       True, False)
    if end is not None and position != end:
        raise _NotPlain
    return position


def _items(data: bytes, position: int, end: int | None, explicit: bool, depth: int,
           limit: int) -> int:
    """Walk a sequence's items (``depth``: their nesting level); returns the sequence's end."""
    if depth > limit:
        raise _NotPlain  # pydicom reads it and refuses it with its own message
    stop = len(data) if end is None else end
    while position < stop:
        group, number, length = _IMPLICIT_HEADER.unpack_from(data, position)
        tag = group << 16 | number
        if tag == _SEQUENCE_END and end is None:
            return position + 8
        if tag != _ITEM:
            raise _NotPlain
        if length == _UNDEFINED:
            position = _elements(data, position + 8, None, explicit, depth, limit, None)
        else:
            position = _elements(data, position + 8, position + 8 + length, explicit, depth,
                                 limit, None)
    if end is None or position != end:
        raise _NotPlain
    return position


def _fragments(data: bytes, position: int) -> int:
    """Skip encapsulated pixel data's items; returns where its delimiter ends."""
    while True:
        group, number, length = _IMPLICIT_HEADER.unpack_from(data, position)
        tag = group << 16 | number
        if tag == _SEQUENCE_END:
            return position + 8
        if tag != _ITEM or length == _UNDEFINED or position + 8 + length > len(data):
            raise _NotPlain
        position += 8 + length


def _raw_person_name(data: bytes | None, encoding: str | None) -> Any:
    """``index_value`` of a PN value as pydicom converts it (``convert_PN``): stripped of
    trailing spaces and NULs, decoded, one value trimmed, several kept as they are. Names
    with component groups are left to pydicom."""
    if data is None or encoding is None:
        return _NOT_CONVERTED
    try:
        text = data.rstrip(b"\x00 ").decode(encoding)
    except UnicodeDecodeError:
        return _NOT_CONVERTED
    if not text:
        return None
    if "=" in text:
        return _NOT_CONVERTED  # ideographic or phonetic groups: pydicom trims empty ones
    return text if "\\" in text else text.strip()


def parse_instance(
    data: bytes, *, max_image_pixels: int, max_sequence_depth: int
) -> ParsedInstance:
    """Parse ``data`` (Part 10 file or bare dataset), validate it and return what to index."""
    if len(data) < 8:
        raise InvalidDicom("empty or truncated data (fewer than 8 bytes)")
    old_limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(old_limit, 3000))
        ds = scan(data, max_sequence_depth)
        if ds is None:
            ds = pydicom.dcmread(io.BytesIO(data), force=True, defer_size=_DEFER_BYTES)
            _sequence_depth(ds, max_sequence_depth)
    except RecursionError as exc:
        raise InvalidDicom(f"sequences nested too deeply to read (> {max_sequence_depth})") from exc
    except InvalidDicom:
        raise
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError,
            NotImplementedError, AttributeError, IndexError, OverflowError, struct.error,
            zlib.error) as exc:
        raise InvalidDicom(f"unreadable DICOM: {type(exc).__name__}: {str(exc)[:160]}") from exc
    finally:
        sys.setrecursionlimit(old_limit)

    if len(ds) == 0:
        raise InvalidDicom("no data elements found (not DICOM)")
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta_syntax = transfer_syntax = _meta_uid(meta, 0x00020010)
    if transfer_syntax and not _is_valid_uid(transfer_syntax):
        raise InvalidDicom(f"file meta TransferSyntaxUID {transfer_syntax[:70]!r} is not a UID")
    if not transfer_syntax:
        transfer_syntax = _guess_transfer_syntax(ds)
    try:
        values = index_values(ds)
        sop_instance_uid = _require_uid(values, "SOPInstanceUID")
        sop_class_uid = _require_uid(values, "SOPClassUID")
        study_instance_uid = _require_uid(values, "StudyInstanceUID")
        series_instance_uid = _require_uid(values, "SeriesInstanceUID")
        meta_sop = _meta_uid(meta, 0x00020003).rstrip("\0")
        if meta_sop and meta_sop != sop_instance_uid:
            raise InvalidDicom("file meta MediaStorageSOPInstanceUID differs from SOPInstanceUID")
        _check_pixel_data(ds, values, data, max_image_pixels, meta_syntax)
    except InvalidDicom:
        raise
    except (ValueError, TypeError, KeyError, OverflowError, UnicodeError, LookupError) as exc:
        raise InvalidDicom(
            f"invalid attribute value: {type(exc).__name__}: {str(exc)[:160]}") from exc
    part10 = data if data[128:132] == b"DICM" else _with_file_meta(ds, data, transfer_syntax)
    return ParsedInstance(sop_instance_uid, sop_class_uid, study_instance_uid,
                          series_instance_uid, transfer_syntax, values, part10)


def _meta_uid(meta: Dataset, tag: int) -> str:
    """A File Meta UID as text (``str(meta.get(tag).value)``), read from its raw bytes when
    they are plain ASCII: pydicom's conversion of the element cost more than the reading."""
    raw = meta._dict.get(tag)
    if (isinstance(raw, RawDataElement) and isinstance(raw.value, bytes)
            and raw.value.isascii()):
        return raw.value.decode("ascii").rstrip("\0 ")
    element = meta.get(tag)
    return str(element.value or "") if element is not None else ""


def _guess_transfer_syntax(ds: Dataset) -> str:
    if ds.is_little_endian is False:
        return str(pydicom.uid.ExplicitVRBigEndian)
    return str(pydicom.uid.ImplicitVRLittleEndian if ds.is_implicit_VR else
               pydicom.uid.ExplicitVRLittleEndian)


def _check_pixel_data(ds: Dataset, values: dict[str, str | int | None], data: bytes,
                      max_image_pixels: int, transfer_syntax: str) -> None:
    """``transfer_syntax``: the File Meta's, empty without one."""
    rows = int(values["Rows"] or 0)
    columns = int(values["Columns"] or 0)
    frames_raw: Any = values["NumberOfFrames"] or 1
    try:
        frames = max(int(frames_raw), 1)
    except (TypeError, ValueError) as exc:
        raise InvalidDicom(f"NumberOfFrames {str(frames_raw)[:20]!r} is not a number") from exc
    if rows * columns * frames > max_image_pixels:
        raise InvalidDicom(
            f"absurd image size {rows}x{columns}x{frames} (limit {max_image_pixels} pixels)"
        )
    for tag in (TAG_PIXEL_DATA, TAG_FLOAT_PIXEL_DATA, TAG_DOUBLE_PIXEL_DATA):
        if tag not in ds._dict:
            continue
        raw = ds.get_item(tag, keep_deferred=True)
        # Deferred native pixel data: its declared length must fit in what was received.
        if (isinstance(raw, RawDataElement) and raw.value is None
                and raw.length != 0xFFFFFFFF and raw.value_tell + raw.length > len(data)):
            raise InvalidDicom(
                f"truncated: pixel data declares {raw.length} bytes, "
                f"{len(data) - raw.value_tell} received"
            )
        if rows and columns and tag == TAG_PIXEL_DATA:
            # What was received counts, not what the element header declares.
            length = (raw.length if isinstance(raw, RawDataElement) and raw.value is None
                      else len(raw.value or b""))
            if not (isinstance(raw, RawDataElement) and raw.length == 0xFFFFFFFF):
                _check_native_length(ds, values, length, rows, columns, frames,
                                     transfer_syntax)


def _check_native_length(ds: Dataset, values: dict[str, str | int | None], length: int,
                         rows: int, columns: int, frames: int, transfer_syntax: str) -> None:
    if transfer_syntax and UID(transfer_syntax).is_compressed:
        return
    bits = int(values["BitsAllocated"] or 0)
    samples = _samples_per_pixel(ds)
    if bits <= 0:
        return
    expected = (rows * columns * frames * samples * bits + 7) // 8
    if length + 1 < expected:
        raise InvalidDicom(
            f"truncated: pixel data holds {length} bytes, {rows}x{columns}x{frames} "
            f"at {bits} bits needs {expected}"
        )


def _samples_per_pixel(ds: Dataset) -> int:
    """``int(ds.get("SamplesPerPixel", 1) or 1)``; a raw little endian US read as it is."""
    raw = ds._dict.get(0x00280002)
    if (isinstance(raw, RawDataElement) and raw.VR == "US" and raw.is_little_endian
            and isinstance(raw.value, bytes) and len(raw.value) == 2):
        return struct.unpack("<H", raw.value)[0] or 1
    return int(ds.get("SamplesPerPixel", 1) or 1)


def _with_file_meta(ds: Dataset, data: bytes, transfer_syntax: str) -> bytes:
    """Prefix a bare dataset with a File Meta header; the dataset bytes stay as received."""
    return part10(data[_dataset_offset(data):], str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                  transfer_syntax)


def part10(dataset: bytes, sop_class_uid: str, sop_instance_uid: str,
           transfer_syntax_uid: str) -> bytes:
    """A Part 10 file: preamble, File Meta (PS3.10 7.1, Explicit VR Little Endian) and the
    dataset bytes as they are. Encoded by hand: pydicom's writer costs more than the rest of
    a small C-STORE's parsing."""
    def element(tag_element: int, vr: bytes, value: bytes) -> bytes:
        if len(value) % 2:
            value += b"\0" if vr == b"UI" else b" "
        if vr == b"OB":
            return struct.pack("<HH2sHI", 2, tag_element, vr, 0, len(value)) + value
        return struct.pack("<HH2sH", 2, tag_element, vr, len(value)) + value

    body = b"".join((
        element(0x0001, b"OB", b"\x00\x01"),
        element(0x0002, b"UI", sop_class_uid.encode("ascii", "replace")),
        element(0x0003, b"UI", sop_instance_uid.encode("ascii", "replace")),
        element(0x0010, b"UI", transfer_syntax_uid.encode("ascii", "replace")),
        element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii")),
        element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii")),
    ))
    group_length = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body))
    return b"".join((b"\0" * 128, b"DICM", group_length, body, dataset))


def _dataset_offset(data: bytes) -> int:
    """Where the dataset starts in data that has no valid Part 10 preamble."""
    if data[:4] == b"DICM":
        # "DICM" without preamble: skip the prefix and any group 0002 elements.
        raise InvalidDicom("file meta without preamble is not supported")
    return 0
