"""The `extract` source: WARC/WET files -> documents (DOCUMENT_FIELDS + WARC_FIELDS).

Per record:
- WARC `response`: HTTP 200 + HTML content type -> charset decoding and main-text extraction in a
  time-limited child process (processors.html_text); anything else is dropped under a reason
  (`http_status_404`, `not_html`, `truncated_record`, `page_too_large`, `extraction_timeout`, ...);
- WARC `resource` with an HTML content type (wget/browser crawls store pages this way): same,
  without HTTP headers;
- WET `conversion`: Common Crawl's own plain text, taken as is (no HTML extraction);
- request/metadata/warcinfo/revisit records are not documents: counted in
  `records_skipped_non_response`, not as drops.
WAT files (JSON metadata only) are refused with a ProcessorError.
"""
from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any, Iterator, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from processors.base import BatchResult, Params, ProcessorError, Source
from processors.html_text import ExtractionWorker, ExtractSettings, check_installed, process_html
from processors.prefilter import MinCountRule
from processors.schema import DOCUMENT_FIELDS, WARC_FIELDS
from processors.uris import domain_of  # noqa: F401 - re-exported for callers of extract
from processors.warc import (
    DEFAULT_LISTING_PREFIX,
    WAT_REFUSAL,
    BodyTooLarge,
    charset_param,
    RawRecord,
    ReadStats,
    decode_http_body,
    expand_inputs,
    is_wat,
    iter_records,
    looks_like_warc,
    parse_http_response,
)

OUTPUT_SCHEMA = pa.schema(DOCUMENT_FIELDS + WARC_FIELDS)
_FAILURE_REASONS = {"timeout": "extraction_timeout", "failed": "extraction_failed", "crashed": "extraction_crashed"}
_HTTP_HEADER_ALLOWANCE = 64 * 1024  # block bytes read beyond max_html_bytes for HTTP headers
_MAX_BATCH_TEXT_CHARS = 64 << 20  # also flush a batch early when its text gets this large


class ExtractParams(Params):
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    # trafilatura options. Defaults chosen on gold/article-benchmark.json
    # (benchmarks/bench_extract_quality.py): precision-leaning, no comments, with fallbacks.
    favour_precision: bool = True
    favour_recall: bool = False
    include_tables: bool = True
    include_comments: bool = False  # also applies to resiliparse
    deduplicate: bool = False  # repeated segments within a page (fresh cache per page)
    fallback: bool = True  # trafilatura's readability/jusText fallbacks; False is ~1.4x faster
    # Wall-clock limit per page, decoding included. The slowest of the 1,153 web/ pages takes
    # 0.35 s of CPU (p99 0.08 s): 5 s leaves room for a loaded machine; pathological pages can
    # take minutes.
    timeout_s: float = Field(5.0, gt=0)
    max_html_bytes: int = Field(5_000_000, gt=0)  # larger payloads: `page_too_large`
    html_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    batch_size: int = Field(1000, gt=0)
    source_name: str = "cc"
    listing_prefix: str = DEFAULT_LISTING_PREFIX  # for relative lines of *.paths.gz listings
    storage_options: dict[str, Any] = Field(default_factory=dict)  # fsspec options (s3 is anon by default)
    max_pages_per_child: int = Field(10_000, gt=0)  # recycle the child to bound memory growth
    # The pre-pass (processors.prefilter): pages that a later filter is sure to drop, judged on
    # the page's whole visible text, are not extracted (counted as `prefilter:<stage>:<rule>`).
    # `prefilter_rules` is filled by the engine from the pipeline's later filters; with
    # prefilter: false every page is extracted and the later filters decide alone.
    prefilter: bool = True
    prefilter_rules: list[MinCountRule] = Field(default_factory=list)
    child_memory_mb: int | None = Field(4096, gt=0)  # RLIMIT_AS of the child; a bomb page fails alone

    @model_validator(mode="after")
    def _one_bias(self) -> "ExtractParams":
        if self.favour_precision and self.favour_recall:
            raise ValueError("favour_precision and favour_recall are exclusive: set one to false")
        return self

    def settings(self) -> ExtractSettings:
        return ExtractSettings(
            extractor=self.extractor,
            favour_precision=self.favour_precision,
            favour_recall=self.favour_recall,
            include_tables=self.include_tables,
            include_comments=self.include_comments,
            deduplicate=self.deduplicate,
            fallback=self.fallback,
            prefilter=tuple(self.prefilter_rules) if self.prefilter else (),
        )


class Extract(Source):
    """WARC/WET -> documents. Read with `read(uri)`; inputs from `expand(patterns)`."""

    kind = "extract"
    Params = ExtractParams
    provides = tuple(f.name for f in DOCUMENT_FIELDS + WARC_FIELDS)

    def __init__(self, params: ExtractParams | None = None) -> None:
        super().__init__(params)
        self._worker: ExtractionWorker | None = None
        self._lock = threading.Lock()  # one page in flight per child
        self._target = process_html  # what the child runs; tests replace it

    def __getstate__(self) -> dict:
        # The engine may ship a configured instance to workers: the child process and the lock
        # belong to one process and are recreated there.
        state = self.__dict__.copy()
        state["_worker"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ---- lifecycle

    def check(self) -> None:
        # On the driver, before any work: a missing trafilatura/lxml_html_clean is one clear
        # error, not a failure on every record. Only looked up, not imported (importing
        # trafilatura costs the driver ~0.7 s): each worker's child imports and probes it.
        check_installed(self.params.settings())

    def setup(self) -> None:
        if self._worker is None:
            p = self.params
            self._worker = ExtractionWorker(
                p.settings(),
                p.timeout_s,
                target=self._target,
                max_pages_per_child=p.max_pages_per_child,
                memory_limit_mb=p.child_memory_mb,
            )
        # The child imports trafilatura while this worker loads its other models and reads the
        # first records; the first page waits for it (a failure is reported there).
        self._worker.start(wait=False)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ---- inputs

    def accepts(self, uri: str) -> bool:
        return looks_like_warc(uri)  # WAT included: read() refuses it with a clear message

    def list_inputs(self, patterns: list[str]) -> list[str]:
        """Globs, folders, remote URIs and CC `*.paths.gz` listings; WAT refused before any work."""
        return expand_inputs(patterns, listing_prefix=self.params.listing_prefix, storage_options=self.params.storage_options)

    # ---- reading

    def read(self, uri: str) -> Iterator[BatchResult]:
        if is_wat(uri):
            raise ProcessorError(f"{uri!r} {WAT_REFUSAL}")
        p = self.params
        batch = _Batch(uri, p.source_name)
        stats = ReadStats()
        records = iter_records(
            uri,
            max_block_bytes=p.max_html_bytes + _HTTP_HEADER_ALLOWANCE,
            stats=stats,
            storage_options=p.storage_options,
        )
        seen_document_record = False
        try:
            for rec in records:
                batch.counters["records"] += 1
                batch.ordinal = stats.records
                if rec.record_type in ("response", "resource", "conversion"):
                    seen_document_record = True
                    self._document(rec, batch)
                else:
                    if not seen_document_record and _is_wat_record(rec):
                        raise ProcessorError(f"{uri!r} {WAT_REFUSAL}")
                    batch.counters["records_skipped_non_response"] += 1
                if batch.full(p.batch_size):
                    yield batch.flush()
        except FileNotFoundError:
            if stats.records:
                raise
            batch.drops["input_missing"] += 1
        finally:
            records.close()
        if stats.read_error:
            batch.drops["input_read_error"] += 1
        if stats.corrupt_regions:
            batch.drops["corrupt_record"] += stats.corrupt_regions
            batch.counters["bytes_skipped_corrupt"] += stats.bytes_skipped
        if stats.records == 0 and stats.input_bytes > 0 and not stats.read_error:
            batch.drops["input_not_warc"] += 1
        if stats.single_gzip_member:
            batch.counters["inputs_single_gzip_member"] += 1  # warc_offset is null: not seekable
        batch.counters["input_bytes"] += stats.input_bytes
        batch.counters["inputs"] += 1
        yield batch.flush()

    def _document(self, rec: RawRecord, batch: "_Batch") -> None:
        if rec.record_type == "conversion":
            self._wet_document(rec, batch)
            return
        if rec.headers.get("warc-truncated"):
            # The crawler cut the payload at its size limit (CC: 1 MiB, later 5 MiB): the record
            # is complete as stored and the page start is usually enough. Kept, but counted.
            batch.counters["records_warc_truncated"] += 1
        page = self._html_payload(rec)
        if isinstance(page, str):
            batch.drops[page] += 1
            return
        batch.counters["html_pages"] += 1
        status, value = self._extract(*page, rec.target_uri)
        if status == "ok":
            text, used_charset, lang = value[:3]
            rejected_by = value[3] if len(value) > 3 else None
            if rejected_by is not None:
                batch.drops[f"prefilter:{rejected_by}"] += 1
            elif text.strip():
                batch.add(rec, text, used_charset, lang)
            else:
                batch.drops["empty_text"] += 1
            return
        batch.drops[_FAILURE_REASONS[status]] += 1
        if status in ("timeout", "crashed"):
            batch.counters["extractor_restarts"] += 1

    def _wet_document(self, rec: RawRecord, batch: "_Batch") -> None:
        """WET `conversion` record: Common Crawl's plain text, UTF-8, used as is."""
        batch.counters["wet_records"] += 1
        if not rec.complete:
            batch.drops["truncated_record"] += 1
        elif rec.oversized:
            batch.drops["page_too_large"] += 1
        else:
            lang = (rec.headers.get("warc-identified-content-language") or "").split(",")[0].strip()
            batch.add(rec, rec.block.decode("utf-8", "replace"), "utf-8", lang or None)

    def _html_payload(self, rec: RawRecord) -> tuple[bytes, str | None, str | None] | str:
        """(payload, declared charset, declared language) of an HTML page, or the drop reason."""
        if rec.record_type == "response":
            http = parse_http_response(rec.block)
            if http.status is None:
                return "truncated_record" if not rec.complete else "http_malformed"
            if http.status != 200:
                return f"http_status_{http.status}"
            headers, body_offset, mime, charset = http.headers, http.body_offset, http.mime(), http.charset()
        else:  # resource: the block is the page itself, typed by the WARC header
            content_type = rec.headers.get("content-type", "")
            headers, body_offset = {}, 0
            mime, charset = content_type.split(";", 1)[0].strip().lower(), charset_param(content_type)
        if not self._is_html(mime, rec, rec.block[body_offset:body_offset + 1024]):
            return "not_html"
        if not rec.complete:
            return "truncated_record"
        if rec.oversized or len(rec.block) - body_offset > self.params.max_html_bytes:
            return "page_too_large"
        try:
            payload = decode_http_body(rec.block[body_offset:], headers, self.params.max_html_bytes)
        except BodyTooLarge:
            return "page_too_large"
        return payload, charset, headers.get("content-language")

    def _is_html(self, mime: str, rec: RawRecord, head: bytes) -> bool:
        if mime in self.params.html_types:
            return True
        if mime and mime not in ("application/octet-stream", "unknown/unknown", "application/unknown"):
            return False
        # No usable declared type: trust CC's payload detection, else sniff the bytes.
        identified = rec.headers.get("warc-identified-payload-type", "").split(";", 1)[0].strip().lower()
        if identified:
            return identified in self.params.html_types
        start = head.lstrip()[:64].lower()
        return start.startswith((b"<!doctype html", b"<html", b"<head"))

    def _extract(self, payload: bytes, charset: str | None, language: str | None, url: str | None):
        with self._lock:
            if self._worker is None:
                self.setup()
            return self._worker.extract(payload, charset, language, url)


def _is_wat_record(rec: RawRecord) -> bool:
    """WAT files: a warcinfo naming a .wat file, or JSON metadata records before any document."""
    if rec.record_type == "warcinfo":
        return is_wat(rec.headers.get("warc-filename", "").strip())
    return rec.record_type == "metadata" and rec.headers.get("content-type", "").startswith("application/json")


class _Batch:
    """Rows and counts accumulated since the last yield."""

    def __init__(self, uri: str, source: str) -> None:
        self.uri, self.source = uri, source
        self.base = os.path.basename(uri.rstrip("/"))
        self.cols: dict[str, list] = {f.name: [] for f in OUTPUT_SCHEMA}
        self.chars = 0
        self.ordinal = 0  # index of the current record in the file
        self.drops: Counter = Counter()
        self.counters: Counter = Counter()

    def add(self, rec: RawRecord, text: str, charset: str, lang: str | None) -> None:
        c = self.cols
        # WARC-Record-ID is globally unique and stable; a record without one (malformed) gets a
        # key from the file name and position, which is stable across reads and mirrors.
        c["id"].append(rec.record_id or f"{self.base}@{rec.offset if rec.offset is not None else f'#{self.ordinal}'}")
        c["source"].append(self.source)
        c["url"].append(rec.target_uri)
        c["domain"].append(domain_of(rec.target_uri))
        c["date"].append(rec.date)
        c["text"].append(text)
        c["warc_file"].append(self.uri)
        c["warc_offset"].append(rec.offset)
        c["charset"].append(charset)
        c["content_language"].append(lang)
        self.chars += len(text)
        self.counters["documents"] += 1

    def full(self, batch_size: int) -> bool:
        return len(self.cols["id"]) >= batch_size or self.chars >= _MAX_BATCH_TEXT_CHARS

    def flush(self) -> BatchResult:
        table = pa.table(self.cols, schema=OUTPUT_SCHEMA)
        result = BatchResult(table, self.drops, self.counters)
        self.cols = {f.name: [] for f in OUTPUT_SCHEMA}
        self.chars = 0
        self.drops, self.counters = Counter(), Counter()
        return result
