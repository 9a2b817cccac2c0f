"""HTML bytes -> main text: charset decoding, declared language, and extraction under a time limit.

Extraction runs in a persistent child process (`ExtractionWorker`) fed one page at a time over a
socket. A page that takes longer than the time limit gets its child killed (SIGKILL; no
Python-level timeout can interrupt lxml's C code) and a new child started for the next page.

Heavy imports (trafilatura, resiliparse's extractor) happen inside functions: importing this
module from the engine's driver stays cheap.
"""
from __future__ import annotations

import codecs
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Callable

from processors.process_status import exit_status

if TYPE_CHECKING:
    from processors.prefilter import MinCountRule


def _error(message: str) -> Exception:
    # processors.base pulls in numpy, pyarrow and pydantic (~0.5 s): the child imports this module
    # at every (re)start and needs none of them unless something is already wrong.
    from processors.base import ProcessorError

    return ProcessorError(message)


# --------------------------------------------------------------------------------------------
# Charset

# Head bytes searched for <meta charset>; pages put it late more often than WHATWG's 1024 allow.
_SNIFF_BYTES = 8192
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.+-]{1,40})""", re.IGNORECASE
)
_XML_DECL = re.compile(rb"""^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([a-zA-Z0-9_.:+-]{1,40})""", re.I)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# WHATWG names (resiliparse maps labels to them) widened to the superset the web actually sends:
# pages labelled GBK/Shift_JIS/EUC-KR/Big5 routinely use the vendor extensions.
_ASCII = bytes(range(128))
# A reading that fails on at most this share of the non-ASCII bytes is a right charset with a few
# stray bytes; a wrong one fails on most of them (every accented letter).
_STRAY_BYTES_RATIO = 0.02
_SUPERSET = {"gbk": "gb18030", "gb2312": "gb18030", "shift_jis": "cp932", "euc_kr": "cp949", "big5": "big5hkscs"}


def normalize_charset(label: str | None, *, from_meta: bool = False) -> str | None:
    """Map a declared label to a Python codec name following WHATWG (latin-1 -> cp1252, ...);
    None for unknown labels ("none", "utf8mb4", typos)."""
    if not label:
        return None
    from resiliparse.parse.encoding import map_encoding_to_html5

    name = map_encoding_to_html5(label.strip().strip("\"'").lower(), fallback_utf8=False)
    if name is None:
        return None
    name = codecs.lookup(name).name
    if from_meta and name.startswith(("utf-16", "utf-32")):
        return "utf-8"  # WHATWG: a meta tag read as ASCII cannot truthfully declare UTF-16
    return _SUPERSET.get(name, name)


def meta_charset(data: bytes) -> str | None:
    """Charset declared by <meta charset>, <meta http-equiv=Content-Type> or the XML declaration."""
    head = data[:_SNIFF_BYTES]
    m = _META_CHARSET.search(head) or _XML_DECL.search(head)
    return m.group(1).decode("ascii", "ignore") if m else None


def decode_html(data: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """Decode HTML bytes; returns (text, codec name used).

    Order: BOM; valid UTF-8 (a legacy-encoded page with non-ASCII text is almost never valid
    UTF-8, while UTF-8 mislabelled as ISO-8859-1 is common and would strict-decode to mojibake);
    the HTTP charset, then the meta charset, verified by a strict decode; then the same readings
    again if they fail on a few stray bytes only (a UTF-8 page with one Latin-1 byte pasted in
    must not be handed to detection, which may call it cp1252 and garble all of it); then
    uchardet (resiliparse); last resort the declared charset with replacement characters.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(name, "replace"), name
    declared = [normalize_charset(http_charset), normalize_charset(meta_charset(data), from_meta=True)]
    candidates = list(dict.fromkeys(c for c in declared if c))
    if data.isascii():
        ascii_compatible = [c for c in candidates if not c.startswith(("utf-16", "utf-32"))]
        return data.decode("ascii"), (ascii_compatible[0] if ascii_compatible else "ascii")
    readings = list(dict.fromkeys(["utf-8", *candidates]))
    for name in readings:
        text = _try_decode(data, name)
        if text is not None:
            return text, name
    non_ascii = len(data.translate(None, _ASCII))
    for name in readings:
        text = _try_decode(data, name, errors="replace")
        if text is not None and text.count("\ufffd") <= _STRAY_BYTES_RATIO * non_ascii:
            return text, name
    from resiliparse.parse.encoding import detect_encoding

    detected = normalize_charset(detect_encoding(data, max_len=65536)) or "utf-8"
    text = _try_decode(data, detected)
    if text is not None:
        return text, detected
    # Nothing decodes cleanly (mixed encodings, binary junk): keep the most plausible reading.
    best = candidates[0] if candidates else detected
    return data.decode(best, "replace"), best


def _try_decode(data: bytes, name: str, errors: str = "strict") -> str | None:
    try:
        return data.decode(name, errors)
    except (UnicodeDecodeError, LookupError):
        return None


# --------------------------------------------------------------------------------------------
# Declared language

_LANG_VALUE = r"([a-zA-Z][a-zA-Z0-9_-]{1,34})"  # a BCP 47 tag, or whatever word the page declares
_HTML_LANG = re.compile(r"<html\b[^>]{0,1000}?\blang\s*=\s*[\"']?\s*" + _LANG_VALUE, re.I)
_META_LANG_A = re.compile(  # <meta http-equiv="content-language" content="de">
    r"<meta[^>]{0,300}?http-equiv\s*=\s*[\"']?content-language[\"']?[^>]{0,300}?content\s*=\s*[\"']?\s*" + _LANG_VALUE,
    re.I,
)
_META_LANG_B = re.compile(  # the same with the attributes the other way round
    r"<meta[^>]{0,300}?content\s*=\s*[\"']?\s*" + _LANG_VALUE + r"[\"']?[^>]{0,300}?http-equiv\s*=\s*[\"']?content-language",
    re.I,
)


def declared_language(html: str, http_language: str | None = None) -> str | None:
    """Language the page declares: HTTP Content-Language, else <meta http-equiv=content-language>,
    else <html lang>. Returned as declared (trimmed, first of a list); not detected, not mapped."""
    if http_language and http_language.strip():
        return http_language.split(",")[0].strip()[:35] or None
    head = html[:_SNIFF_BYTES * 2]
    m = _META_LANG_A.search(head) or _META_LANG_B.search(head)
    if m:
        return m.group(1)
    m = _HTML_LANG.search(head)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------
# Main text


@dataclass(frozen=True)
class ExtractSettings:
    """Extractor options, sent once to the child process."""

    extractor: str = "trafilatura"  # or "resiliparse"
    favour_precision: bool = False
    favour_recall: bool = False
    include_tables: bool = True
    include_comments: bool = False
    deduplicate: bool = False
    fallback: bool = True  # trafilatura: run readability/jusText fallbacks when the main pass is thin
    # Rules of later filters tested on the page's whole visible text before extraction
    # (processors.prefilter): a page failing one is not extracted at all.
    prefilter: tuple["MinCountRule", ...] = ()


def extract_main_text(html: str, url: str | None, settings: ExtractSettings) -> str:
    """Main text of a decoded page with the configured extractor ("" when nothing is found)."""
    if settings.extractor == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        tree = HTMLTree.parse(html)
        return extract_plain_text(
            tree,
            main_content=True,
            preserve_formatting=True,
            list_bullets=True,
            alt_texts=False,
            links=False,
            form_fields=False,
            noscript=False,
            comments=settings.include_comments,
        )
    trafilatura = _trafilatura()
    from trafilatura.deduplication import LRUCache

    text = trafilatura.extract(
        html,
        url=url,
        fast=not settings.fallback,
        favor_precision=settings.favour_precision,
        favor_recall=settings.favour_recall,
        include_comments=settings.include_comments,
        include_tables=settings.include_tables,
        # A fresh cache per page: repeats inside the page are removed, but the output never
        # depends on which pages the same process saw before (order, worker, restarts).
        deduplicate=LRUCache(maxsize=1024) if settings.deduplicate else False,
        output_format="txt",
        with_metadata=False,
    )
    return text or ""


_SPEEDUPS: list[str] | None = None  # trafilatura expressions replaced in this process


def _trafilatura():
    """trafilatura, with the exact stand-ins of processors.trafilatura_speedups installed once
    per process (identical output, ~1.4x less CPU)."""
    global _SPEEDUPS
    import trafilatura

    if _SPEEDUPS is None:
        from processors.trafilatura_speedups import install

        _SPEEDUPS = install()
    return trafilatura


def process_html(
    payload: bytes, http_charset: str | None, http_language: str | None, url: str | None,
    settings: ExtractSettings,
) -> tuple[str, str, str | None, str | None]:
    """Bytes of one page -> (main text, charset used, declared language, pre-pass rejection).
    Runs in the child. A page the pre-pass rejects is not extracted: ("", charset, None, reason)."""
    html, charset = decode_html(payload, http_charset)
    if settings.prefilter:
        from processors.prefilter import reject_reason

        reason = reject_reason(html, settings.prefilter)
        if reason is not None:
            return "", charset, None, reason
    return extract_main_text(html, url, settings), charset, declared_language(html, http_language), None


def check_installed(settings: ExtractSettings) -> None:
    """Raise ProcessorError unless the extractor can be imported. trafilatura is only looked up
    (importing it costs ~0.7 s); resiliparse (charsets, the pre-pass) is imported, which is
    cheap. The driver runs this before any work; each extraction child imports and probes the
    extractor with `check_extractor` when it starts."""
    import importlib.util

    if settings.extractor not in ("trafilatura", "resiliparse"):
        raise _error(f"unknown extractor {settings.extractor!r}")
    try:
        import resiliparse.extract.html2text  # noqa: F401
        import resiliparse.parse.encoding  # noqa: F401
        for name in ("trafilatura", "lxml_html_clean") if settings.extractor == "trafilatura" else ():
            try:
                found = importlib.util.find_spec(name) is not None
            except ValueError:  # sys.modules[name] is None: imports of it fail
                found = False
            if not found:
                raise ImportError(f"No module named {name!r}")
    except ImportError as exc:
        raise _error(
            f"extract: {settings.extractor} cannot be imported ({exc}); install it "
            f"(pip install trafilatura lxml_html_clean resiliparse)"
        ) from exc


def check_extractor(settings: ExtractSettings) -> None:
    """Import the extractor and run it on a tiny page, raising ProcessorError on any failure.

    A missing lxml_html_clean (split out of lxml 5.2) must fail here, once, not as a failure or a
    timeout on every record."""
    try:
        if settings.extractor == "trafilatura":
            import lxml_html_clean  # noqa: F401 - trafilatura's jusText/readability need it
            import trafilatura  # noqa: F401
        elif settings.extractor == "resiliparse":
            import resiliparse.extract.html2text  # noqa: F401
        else:
            raise _error(f"unknown extractor {settings.extractor!r}")
        import resiliparse.parse.encoding  # noqa: F401 - charset detection
        if settings.prefilter:
            import resiliparse.extract.html2text  # noqa: F401 - the pre-pass's visible text
    except ImportError as exc:
        raise _error(
            f"extract: {settings.extractor} cannot be imported ({exc}); install it "
            f"(pip install trafilatura lxml_html_clean resiliparse)"
        ) from exc
    probe = "<html><body><article><h1>Probe</h1>" + "<p>This sentence checks the extractor works.</p>" * 5
    text = process_html(probe.encode(), "utf-8", None, None, replace(settings, prefilter=()))[0]
    if "extractor works" not in text:
        raise _error(f"extract: {settings.extractor} returned no text for a probe page")


# --------------------------------------------------------------------------------------------
# Child process with a time limit
#
# The child is a fresh interpreter started with subprocess, talking over a socketpair wrapped in
# multiprocessing's Connection (pickled messages, poll with a timeout). Not multiprocessing's
# Process: its spawn and forkserver children re-run the parent's __main__ file (a Ray worker's
# default_worker.py, a script read from stdin fails outright), which a processor cannot control.
# A fresh interpreter importing trafilatura starts in well under a second; it is paid once per
# worker and once per timeout.

Target = Callable[..., tuple]  # (text, charset, declared language[, pre-pass rejection])

_BOOT = (
    "import sys; from multiprocessing.connection import Connection; "
    "c = Connection(int(sys.argv[1])); sys.path[:] = c.recv(); "
    "from processors.html_text import _child_main; _child_main(c, *c.recv())"
)


def _child_main(conn, settings: ExtractSettings, target: Target, memory_limit_mb: int | None) -> None:
    """Loop of the extraction child: one request in, one reply out, until EOF or None."""
    try:
        if memory_limit_mb:
            import resource

            limit = memory_limit_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        check_extractor(settings)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # parent went away
        if msg is None:
            return
        try:
            conn.send(("ok", target(*msg, settings)))
        except MemoryError:
            conn.send(("failed", "MemoryError"))
        except Exception as exc:  # noqa: BLE001 - one bad page must not end the child
            conn.send(("failed", f"{type(exc).__name__}: {exc}"[:300]))


class ExtractionWorker:
    """A persistent child that runs `target(payload, http_charset, http_language, url, settings)`
    with a wall-clock limit per page. `target` must be importable by module name in the child.

    `extract` returns (status, value): ("ok", (text, charset, lang, rejected_by)), ("timeout", None),
    ("failed", message) for an exception in the extractor, ("crashed", message) when the child
    died (segfault, OOM kill). After a timeout or crash the child is replaced on the next call.
    """

    def __init__(
        self,
        settings: ExtractSettings,
        timeout_s: float,
        *,
        target: Target = process_html,
        max_pages_per_child: int = 10_000,
        memory_limit_mb: int | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.target = target
        self.max_pages_per_child = max_pages_per_child
        self.memory_limit_mb = memory_limit_mb
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._pages = 0
        self._booting = False  # spawned, "ready" not received yet
        self.restarts = 0  # children replaced after a timeout or crash
        self.spawns = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, wait: bool = True) -> None:
        """Start the child. With wait=False, return once it is spawned: it imports the extractor
        (~1 s) while the caller goes on (loading other models, reading the first records), and
        the first `extract` waits for it to be ready."""
        if self._proc is None:
            self._spawn()
        if wait and self._booting:
            self._await_ready()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        self._proc, self._conn, self._pages, self._booting = proc, conn, 0, True
        self.spawns += 1
        try:
            conn.send(list(sys.path))
            conn.send((self.settings, self.target, self.memory_limit_mb))
        except (EOFError, OSError):
            self._await_ready()  # reports how the child died

    def _await_ready(self) -> None:
        conn = self._conn
        self._booting = False
        try:
            if not conn.poll(self.startup_timeout_s):
                raise _error(f"extract: child process did not start within {self.startup_timeout_s:.0f} s")
            status, value = conn.recv()
        except (EOFError, OSError):
            code = self._reap()
            raise _error(f"extract: child process died while starting ({exit_status(code)}; "
                         "its stderr is in this worker's log)") from None
        except BaseException:
            self._kill()
            raise
        if status != "ready":
            self._kill()
            raise _error(f"extract: child process cannot extract: {value}")

    def extract(
        self, payload: bytes, http_charset: str | None, http_language: str | None, url: str | None,
        *, timeout_s: float | None = None,
    ) -> tuple[str, object]:
        if self._proc is not None and self._pages >= self.max_pages_per_child:
            self.close()  # bound memory growth of long-lived lxml/trafilatura state
        self.start()
        conn = self._conn
        try:
            conn.send((payload, http_charset, http_language, url))
            if not conn.poll(self.timeout_s if timeout_s is None else timeout_s):
                self._kill()
                self.restarts += 1
                return "timeout", None
            status, value = conn.recv()
        except (EOFError, OSError):
            code = self._reap()
            self.restarts += 1
            return "crashed", f"extraction child died ({exit_status(code)})"
        self._pages += 1
        return status, value

    def _reap(self, wait_s: float = 5.0) -> int | None:
        """After the pipe broke: the child's exit status (it is exiting; give it a moment), then
        clean up. None if it still runs after `wait_s` (it is then killed)."""
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        return code

    def _kill(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._booting = False
        if proc is not None:
            proc.kill()  # SIGKILL: lxml's C code cannot be interrupted any other way
            proc.wait(10)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Stop the child politely (nothing is in flight between calls)."""
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        self._proc = self._conn = None
        self._booting = False
        try:
            conn.send(None)
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(5)
        conn.close()

    def __del__(self) -> None:  # best effort; the child also exits on EOF when the parent dies
        try:
            self._kill()
        except Exception:  # noqa: BLE001
            pass
