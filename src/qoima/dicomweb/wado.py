"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data, rendered images, thumbnails.

Instances stream from the blob store part by part, so a large study never sits in memory.
Metadata comes from the header only (pixel data is not read) and is cached per blob.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from qoima.archive import Archive, StoredInstance
from qoima.dicom.attributes import Level
from qoima.dicom.header import scan
from qoima.dicom.json_model import dataset_to_json
from qoima.dicom.query import Condition, Query
from qoima.dicom.rendering import (
    MEDIA_TYPE_JPEG,
    RENDERED_MEDIA_TYPES,
    RenderOptions,
    parse_window,
    render_frame,
)
from qoima.dicomweb import multipart
from qoima.dicomweb.accept import MediaRange, choose, multipart_part_types, wants_dicom_xml
from qoima.dicomweb.errors import BadRequestError, NotAcceptableError
from qoima.dicomweb.stow import dicomweb_base
from qoima.dicomweb.transcoding import WRITABLE_SYNTAXES, transcode
from qoima.dicomweb.uids import path_uid
from qoima.errors import NotFound

logger = logging.getLogger(__name__)

MEDIA_TYPE_DICOM = "application/dicom"
MEDIA_TYPE_DICOM_JSON = "application/dicom+json"
MEDIA_TYPE_OCTET_STREAM = "application/octet-stream"
DEFAULT_TRANSFER_SYNTAX = str(ExplicitVRLittleEndian)  # PS3.18 8.7.3.5.2
TAG_PIXEL_DATA = 0x7FE00010
THUMBNAIL_VIEWPORT = (128, 128)
# Bytes per write of a streamed response. On a 63 MB CT study (one client, serve --workers 1)
# 1 MB took 57 ms, 2 MB 49 ms, 4 MB 42 ms: each write is one hop to a worker thread and back.
# A response holds at most three such buffers (``_Chunks``).
CHUNK_BYTES = 1 << 22
# PS3.18 Table 8.7.3-2: the media type of a compressed frame, by transfer syntax
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc", "1.2.840.10008.1.2.5": "image/dicom-rle",
}


# Finding instances ---------------------------------------------------------------------------
def _conditions(request: Request) -> tuple[Condition, ...]:
    conditions = [Condition("StudyInstanceUID", "uid_list", values=(path_uid(request, "study"),))]
    if "series" in request.path_params:
        conditions.append(Condition("SeriesInstanceUID", "uid_list",
                                    values=(path_uid(request, "series"),)))
    if "instance" in request.path_params:
        conditions.append(Condition("SOPInstanceUID", "uid_list",
                                    values=(path_uid(request, "instance"),)))
    return tuple(conditions)


def find_instances(archive: Archive, conditions: tuple[Condition, ...]) -> list[StoredInstance]:
    """Stored instances under the resource named by ``conditions``; NotFound when none."""
    instances = archive.instances_for(Query(Level.IMAGE, conditions))
    if not instances:
        uids = "/".join(c.values[0] for c in conditions)
        raise NotFound(f"no instances under {uids}")
    return instances


def _open(archive: Archive, stored: StoredInstance) -> str | BinaryIO:
    path = archive.local_path(stored)
    return path if path is not None else io.BytesIO(archive.read_instance(stored))


def transcode_instance(archive: Archive, stored: StoredInstance, transfer_syntax_uid: str
                       ) -> bytes:
    return transcode(_open(archive, stored), transfer_syntax_uid)


def instance_url(base: str, stored: StoredInstance) -> str:
    return (f"{base}/studies/{stored.study_instance_uid}/series/"
            f"{stored.series_instance_uid}/instances/{stored.sop_instance_uid}")


# Headers and metadata -----------------------------------------------------------------------
class _Lru:
    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class HeaderCache:
    """Parsed headers and their DICOM JSON by blob key. Blobs never change, so entries never
    go stale; a replaced instance gets a new blob key."""

    def __init__(self, max_headers: int = 256, max_json: int = 4096) -> None:
        self._headers = _Lru(max_headers)
        self._json = _Lru(max_json)

    def header(self, archive: Archive, stored: StoredInstance) -> Dataset:
        ds: Dataset | None = self._headers.get(stored.blob_key)
        if ds is None:
            ds = read_header(archive, stored)
            self._headers.put(stored.blob_key, ds)
        return ds

    def metadata(self, archive: Archive, stored: StoredInstance, base: str) -> bytes:
        """The instance's metadata as serialised DICOM JSON."""
        key = (stored.blob_key, base)
        body: bytes | None = self._json.get(key)
        if body is None:
            ds = self.header(archive, stored)
            body = json.dumps(_metadata_json(ds, stored, base), ensure_ascii=False,
                              separators=(",", ":")).encode()
            self._json.put(key, body)
        return body


_HEADER_BYTES = 64 * 1024  # read at first: the headers of most instances fit in it
_HEADER_DEPTH = 64  # sequences nested deeper are read by pydicom


def read_header(archive: Archive, stored: StoredInstance) -> Dataset:
    """The instance's dataset up to its pixel data, which is neither read nor kept. A header
    that starts the blob's first 64 KB is read by ``scan`` (a study's metadata costs about
    half what it cost through ``dcmread``); any other by pydicom."""
    chunks = archive.stream_instance(stored, _HEADER_BYTES)
    try:
        head = next(chunks, b"")
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    ds = scan(head, _HEADER_DEPTH, whole_header=True, complete=len(head) < _HEADER_BYTES)
    if ds is None:
        ds = pydicom.dcmread(_open(archive, stored), force=True, stop_before_pixels=True)
    return ds


def _metadata_json(ds: Dataset, stored: StoredInstance, base: str) -> dict[str, Any]:
    url = instance_url(base, stored)

    def bulk_data_uri(element: DataElement) -> str:
        return f"{url}/bulkdata/{element.tag:08X}"

    body = dataset_to_json(ds, bulk_data_uri)
    if "Rows" in ds and "Columns" in ds:
        is_encapsulated = UID(stored.transfer_syntax_uid).is_compressed
        bits = int(ds.get("BitsAllocated", 16) or 16)
        body["7FE00010"] = {"vr": "OB" if is_encapsulated or bits <= 8 else "OW",
                            "BulkDataURI": f"{url}/bulkdata/7FE00010"}
    return body


# Negotiating transfer syntaxes --------------------------------------------------------------
@dataclass(frozen=True)
class InstanceChoice:
    transfer_syntax_uid: str
    is_as_stored: bool


def dicom_part_ranges(request: Request) -> list[MediaRange]:
    """The acceptable application/dicom parts; 406 when the client accepts none."""
    header = request.query_params.get("accept") or request.headers.get("accept")
    ranges = [r for r in multipart_part_types(header, MEDIA_TYPE_DICOM)
              if r.matches(MEDIA_TYPE_DICOM)]
    if not ranges:
        raise NotAcceptableError("only multipart/related; type=\"application/dicom\" is offered")
    return ranges


def choose_syntax(ranges: list[MediaRange], stored_syntax: str) -> InstanceChoice:
    for media_range in ranges:
        wanted = media_range.params.get("transfer-syntax", DEFAULT_TRANSFER_SYNTAX)
        if wanted in ("*", stored_syntax):
            return InstanceChoice(stored_syntax, True)
        if wanted in WRITABLE_SYNTAXES:
            return InstanceChoice(wanted, False)
    raise NotAcceptableError("none of the requested transfer syntaxes can be produced")


# WADO-RS handlers ---------------------------------------------------------------------------
async def retrieve_instances(request: Request, archive: Archive) -> Response:
    """GET /studies/{study}[/series/{series}[/instances/{instance}]]: multipart DICOM."""
    ranges = dicom_part_ranges(request)
    conditions = _conditions(request)
    instances = await run_in_threadpool(find_instances, archive, conditions)
    choices = [choose_syntax(ranges, stored.transfer_syntax_uid) for stored in instances]
    first: bytes | None = None
    if not choices[0].is_as_stored:
        # Fail before the first byte when the conversion is impossible: 406, not a cut stream
        first = await run_in_threadpool(transcode_instance, archive, instances[0],
                                        choices[0].transfer_syntax_uid)
    boundary = multipart.new_boundary()
    parts = _instance_parts(archive, instances, choices, first, boundary)
    logger.info("WADO-RS retrieve: %d instances", len(instances))
    headers = {}
    if all(choice.is_as_stored for choice in choices):
        # every part's length is known: a Content-Length rather than chunked encoding, which
        # costs the server a copy of every chunk and the client its parsing, and which
        # lets a client show progress
        headers["Content-Length"] = str(_body_length(instances, choices, boundary))
    return StreamingResponse(iterate_in_threadpool(parts), headers=headers,
                             media_type=multipart.content_type(boundary, MEDIA_TYPE_DICOM))


def _part_header(boundary: str, choice: InstanceChoice, length: int) -> bytes:
    return multipart.part_header(
        boundary, f"{MEDIA_TYPE_DICOM}; transfer-syntax={choice.transfer_syntax_uid}",
        {"Content-Length": str(length)})


def _body_length(instances: list[StoredInstance], choices: list[InstanceChoice],
                 boundary: str) -> int:
    """The length of ``_instance_parts``' body when every instance is sent as stored."""
    return sum(len(_part_header(boundary, choice, stored.size_bytes)) + stored.size_bytes
               + len(multipart.CRLF) for stored, choice in zip(instances, choices, strict=True)
               ) + len(multipart.closing(boundary))


def _instance_parts(archive: Archive, instances: list[StoredInstance],
                    choices: list[InstanceChoice], first: bytes | None, boundary: str
                    ) -> Iterator[memoryview]:
    """The multipart body in writes of CHUNK_BYTES: small instances (a CT slice) share a
    write, large ones span several, so memory stays bounded either way. A stored file is read
    straight into the write's buffer, at its place after its part header: one copy of its
    bytes here, where reading then joining the pieces made two."""
    body = _Chunks(CHUNK_BYTES)
    for index, (stored, choice) in enumerate(zip(instances, choices, strict=True)):
        path = archive.local_path(stored) if choice.is_as_stored else None
        if path is not None:
            yield from body.add(_part_header(boundary, choice, stored.size_bytes))
            with open(path, "rb", buffering=0) as fh:
                yield from body.add_file(fh, stored.size_bytes)
        elif choice.is_as_stored:  # a store without local files: its own chunks
            yield from body.add(_part_header(boundary, choice, stored.size_bytes))
            for piece in archive.stream_instance(stored, CHUNK_BYTES):
                yield from body.add(piece)
        else:
            data = first if index == 0 and first is not None else transcode_instance(
                archive, stored, choice.transfer_syntax_uid)
            yield from body.add(_part_header(boundary, choice, len(data)))
            yield from body.add(data)
        yield from body.add(multipart.CRLF)
    yield from body.add(multipart.closing(boundary))
    yield from body.flush()


class _Chunks:
    """Bytes gathered into buffers of ``size``, each handed out once full. A buffer handed
    out is filled again once nothing holds a view of it any more (the server has written or
    copied it): a new one is zero-filled, which for 1 MB cost more than reading it full."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = bytearray(size)
        self.filled = 0
        self.spares: list[bytearray] = []

    def _full(self) -> Iterator[memoryview]:
        if self.filled == self.size:
            yield memoryview(self.buffer)
            self.spares.append(self.buffer)
            free = [index for index, spare in enumerate(self.spares) if _unexported(spare)]
            self.buffer = self.spares.pop(free[0]) if free else bytearray(self.size)
            del self.spares[:-2]  # at most two wait for their views to go
            self.filled = 0

    def add(self, data: bytes) -> Iterator[memoryview]:
        view = memoryview(data)
        while view:
            count = min(len(view), self.size - self.filled)
            self.buffer[self.filled:self.filled + count] = view[:count]
            self.filled += count
            view = view[count:]
            yield from self._full()

    def add_file(self, fh: BinaryIO, length: int) -> Iterator[memoryview]:
        """``length`` bytes of ``fh``; a shorter file (changed on disk since it was indexed)
        cannot fill the announced Content-Length: the response is cut with an error."""
        while length:
            count = min(length, self.size - self.filled)
            read = fh.readinto(memoryview(self.buffer)[self.filled:self.filled + count])
            if not read:
                raise OSError(f"stored file {fh.name!r} is shorter than its index entry")
            self.filled += read
            length -= read
            yield from self._full()

    def flush(self) -> Iterator[memoryview]:
        if self.filled:
            yield memoryview(self.buffer)[:self.filled]


def _unexported(buffer: bytearray) -> bool:
    """Whether no view of ``buffer`` is alive (resizing one that has views is refused)."""
    try:
        buffer.append(0)
    except BufferError:
        return False
    del buffer[-1]
    return True


async def retrieve_metadata(request: Request, archive: Archive, headers: HeaderCache
                            ) -> Response:
    """GET .../metadata: DICOM JSON of each instance's header, bulk data as BulkDataURIs."""
    accept = request.query_params.get("accept") or request.headers.get("accept")
    xml = wants_dicom_xml(accept)
    conditions = _conditions(request)
    base = dicomweb_base(request)

    def work() -> list[bytes]:
        instances = find_instances(archive, conditions)
        return [headers.metadata(archive, stored, base) for stored in instances]

    models = await run_in_threadpool(work)
    if xml:
        return multipart.dicom_xml_response([json.loads(model) for model in models])
    return Response(b"[" + b",".join(models) + b"]", media_type=MEDIA_TYPE_DICOM_JSON)


def parse_frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise BadRequestError(f"frame list {text[:40]!r} is not comma-separated numbers") from exc
    if not numbers or min(numbers) < 1 or len(numbers) > 10_000:
        raise BadRequestError("frame numbers start at 1")
    return numbers


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _frame_bytes(source: str | BinaryIO, numbers: list[int], keep_compressed: bool
                 ) -> tuple[list[bytes], str]:
    """The requested frames, compressed as stored or as native little-endian pixels."""
    ds = pydicom.dcmread(source, force=True)
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data")
    frames = _number_of_frames(ds)
    if max(numbers) > frames:
        raise NotFound(f"frame {max(numbers)} requested, the instance has {frames}")
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
    if syntax.is_compressed and keep_compressed:
        compressed = list(generate_frames(ds.PixelData, number_of_frames=frames))
        return [compressed[n - 1] for n in numbers], FRAME_MEDIA_TYPES.get(
            str(syntax), MEDIA_TYPE_OCTET_STREAM)
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if not syntax.is_compressed and syntax.is_little_endian and bits % 8 == 0:
        rows, columns = int(ds.Rows), int(ds.Columns)
        size = rows * columns * int(ds.get("SamplesPerPixel", 1) or 1) * bits // 8
        data = ds.PixelData
        return [data[(n - 1) * size: n * size] for n in numbers], MEDIA_TYPE_OCTET_STREAM
    try:
        return ([np.ascontiguousarray(pixel_array(ds, index=n - 1, as_rgb=False)).tobytes()
                 for n in numbers], MEDIA_TYPE_OCTET_STREAM)
    except Exception as exc:
        raise NotAcceptableError(f"pixel data cannot be decoded: {type(exc).__name__}") from exc


async def retrieve_frames(request: Request, archive: Archive) -> Response:
    """GET .../frames/{frames}: one part per frame."""
    numbers = parse_frame_numbers(str(request.path_params["frames"]))
    header = request.query_params.get("accept") or request.headers.get("accept")
    ranges = multipart_part_types(header, MEDIA_TYPE_OCTET_STREAM)
    keep_compressed = any(r.params.get("transfer-syntax") == "*" or
                          (r.media_type.startswith("image/") and r.media_type != "image/*")
                          for r in ranges)
    if not any(r.matches(MEDIA_TYPE_OCTET_STREAM) for r in ranges) and not keep_compressed:
        raise NotAcceptableError("frames are offered as application/octet-stream or as stored")
    instances = await run_in_threadpool(find_instances, archive, _conditions(request))
    frames, media_type = await run_in_threadpool(
        lambda: _frame_bytes(_open(archive, instances[0]), numbers, keep_compressed))
    if media_type != MEDIA_TYPE_OCTET_STREAM and not any(r.matches(media_type)
                                                         or r.params.get("transfer-syntax") == "*"
                                                         for r in ranges):
        raise NotAcceptableError(f"frames are stored as {media_type}")
    return multipart.response(frames, media_type)


async def retrieve_bulkdata(request: Request, archive: Archive) -> Response:
    """GET .../bulkdata/{tag}: the value of one top-level attribute as octet-stream."""
    raw_tag = str(request.path_params["tag"])
    try:
        tag = int(raw_tag, 16)
    except ValueError as exc:
        raise BadRequestError(f"{raw_tag[:20]!r} is not an attribute tag") from exc
    if len(raw_tag) != 8:
        raise BadRequestError(f"{raw_tag[:20]!r} is not an attribute tag")
    header = request.query_params.get("accept") or request.headers.get("accept")
    if not any(r.matches(MEDIA_TYPE_OCTET_STREAM) or r.params.get("transfer-syntax") == "*"
               for r in multipart_part_types(header, MEDIA_TYPE_OCTET_STREAM)):
        raise NotAcceptableError("bulk data is offered as application/octet-stream")
    instances = await run_in_threadpool(find_instances, archive, _conditions(request))
    if tag == TAG_PIXEL_DATA:
        def all_frames() -> tuple[list[bytes], str]:
            ds = pydicom.dcmread(_open(archive, instances[0]), force=True,
                                 stop_before_pixels=True)
            numbers = list(range(1, _number_of_frames(ds) + 1))
            return _frame_bytes(_open(archive, instances[0]), numbers, False)

        frames, media_type = await run_in_threadpool(all_frames)
        return multipart.response(frames, media_type)

    def value() -> bytes:
        ds = pydicom.dcmread(_open(archive, instances[0]), force=True, stop_before_pixels=True)
        if tag not in ds:
            raise NotFound(f"attribute {tag:08X} is not in the instance")
        element = ds[tag]
        if isinstance(element.value, bytes):
            return element.value
        raise NotFound(f"attribute {tag:08X} is not bulk data")

    return multipart.response([await run_in_threadpool(value)], MEDIA_TYPE_OCTET_STREAM)


# Rendered and thumbnails --------------------------------------------------------------------
def render_options(request: Request, *, viewport: tuple[int, int] | None = None,
                   multipart_parts: bool = False) -> RenderOptions:
    """PS3.18 8.3.5.1: window, viewport and quality parameters, Accept image/jpeg or png
    (for a multipart answer also as ``multipart/related; type="image/png"``)."""
    header = request.query_params.get("accept") or request.headers.get("accept")
    if multipart_parts:
        media_type = next((t for r in multipart_part_types(header, MEDIA_TYPE_JPEG)
                           for t in RENDERED_MEDIA_TYPES if r.matches(t)), None)
        if media_type is None:
            raise NotAcceptableError("rendered images are offered as image/jpeg or image/png")
    else:
        media_type, _ = choose(header, list(RENDERED_MEDIA_TYPES))
    params = request.query_params
    try:
        window = parse_window(params["window"]) if "window" in params else None
        if "viewport" in params:
            width, height = (int(v) for v in params["viewport"].split(",")[:2])
            if not (0 < width <= 8192 and 0 < height <= 8192):
                raise ValueError("viewport out of range")
            viewport = (width, height)
        quality = int(params.get("quality", "90"))
        if not 1 <= quality <= 100:
            raise ValueError("quality must be 1 to 100")
    except ValueError as exc:
        raise BadRequestError(f"bad rendering parameter: {exc}") from exc
    return RenderOptions(media_type, window, viewport, quality)


def render_instance(archive: Archive, headers: HeaderCache, stored: StoredInstance,
                    frame_number: int, options: RenderOptions) -> bytes:
    """One frame of ``stored`` rendered for display."""
    ds = headers.header(archive, stored)
    if "Rows" not in ds:
        raise NotAcceptableError("the instance has no image to render")
    frames = _number_of_frames(ds)
    if not 1 <= frame_number <= frames:
        raise NotFound(f"frame {frame_number} requested, the instance has {frames}")
    try:
        pixels = pixel_array(_open(archive, stored), index=frame_number - 1)
        return render_frame(pixels, ds, frame_number - 1, options)
    except Exception as exc:
        logger.warning("cannot render %s: %s: %s", stored.sop_instance_uid,
                       type(exc).__name__, str(exc)[:160])
        raise NotAcceptableError(f"the image cannot be rendered: {type(exc).__name__}") from exc


async def retrieve_rendered(request: Request, archive: Archive, headers: HeaderCache
                            ) -> Response:
    """GET .../instances/{instance}[/frames/{frame}]/rendered: one image. The study, the
    series and a list of frames (``frames/1,3,5``) answer multipart/related, one rendered
    image per part: for a study or series the first frame of each image instance, in series
    order and instance number order (instances without pixel data, such as reports, left
    out)."""
    frame_numbers = [1]
    if "frames" in request.path_params:
        frame_numbers = parse_frame_numbers(str(request.path_params["frames"]))
    single = "instance" in request.path_params and len(frame_numbers) == 1
    options = render_options(request, multipart_parts=not single)
    conditions = _conditions(request)
    if single:
        instances = await run_in_threadpool(find_instances, archive, conditions)
        data = await run_in_threadpool(render_instance, archive, headers, instances[0],
                                       frame_numbers[0], options)
        return Response(data, media_type=options.media_type)

    def images() -> list[tuple[StoredInstance, int]]:
        if "instance" in request.path_params:
            stored = find_instances(archive, conditions)[0]
            return [(stored, number) for number in frame_numbers]
        return [(stored, 1) for stored in image_instances(archive, conditions)]

    todo = await run_in_threadpool(images)
    # The first image is rendered before the answer starts: a 406 rather than a cut stream
    first = await run_in_threadpool(render_instance, archive, headers, *todo[0], options)
    boundary = multipart.new_boundary()

    def parts() -> Iterator[bytes]:
        for index, (stored, number) in enumerate(todo):
            try:
                data = first if index == 0 else render_instance(archive, headers, stored,
                                                                number, options)
            except (NotAcceptableError, NotFound):
                continue  # logged by render_instance; the other images still come
            yield b"".join((multipart.part_header(boundary, options.media_type,
                                                  {"Content-Length": str(len(data))}),
                            data, multipart.CRLF))
        yield multipart.closing(boundary)

    logger.info("WADO-RS rendered: %d images", len(todo))
    return StreamingResponse(iterate_in_threadpool(parts()),
                             media_type=multipart.content_type(boundary, options.media_type))


def image_instances(archive: Archive, conditions: tuple[Condition, ...]
                    ) -> list[StoredInstance]:
    """The instances with pixel data under ``conditions``, series by series (in the order
    the index returns them), each series by instance number; NotFound / 406 when none."""
    rows = archive.find(Query(Level.IMAGE, conditions))
    images = [row for row in rows if row.get("Rows")]
    if not images:
        raise NotFound("no instances found") if not rows else NotAcceptableError(
            "no instance with an image to render")
    series_order = {uid: n for n, uid in enumerate(dict.fromkeys(
        row["SeriesInstanceUID"] for row in images))}
    images.sort(key=lambda r: (series_order[r["SeriesInstanceUID"]],
                               r.get("InstanceNumber") is None, r.get("InstanceNumber") or 0))
    return [StoredInstance(row["SOPInstanceUID"], row["SOPClassUID"], row["StudyInstanceUID"],
                           row["SeriesInstanceUID"], row["_transfer_syntax_uid"],
                           row["_blob_key"], row["_size_bytes"]) for row in images]


def representative_instance(archive: Archive, conditions: tuple[Condition, ...]
                            ) -> StoredInstance:
    """The middle image of the first series with images: what a thumbnail shows."""
    images = image_instances(archive, conditions)
    series = [s for s in images if s.series_instance_uid == images[0].series_instance_uid]
    return series[len(series) // 2]


async def retrieve_thumbnail(request: Request, archive: Archive, headers: HeaderCache
                             ) -> Response:
    """GET .../thumbnail at study, series, instance or frame level (PS3.18 10.4.1.1.5)."""
    options = render_options(request, viewport=THUMBNAIL_VIEWPORT)
    frame_number = 1
    if "frames" in request.path_params:
        frame_number = parse_frame_numbers(str(request.path_params["frames"]))[0]
    conditions = _conditions(request)

    def work() -> bytes:
        stored = representative_instance(archive, conditions)
        return render_instance(archive, headers, stored, frame_number, options)

    return Response(await run_in_threadpool(work), media_type=options.media_type,
                    headers={"Cache-Control": "max-age=3600"})

