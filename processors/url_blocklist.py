"""URL blocklist: drop documents whose domain, URL or URL words are listed (FineWeb's first step).

Three kinds of entries, each from a file and/or inline:

- **domains** (`domains_file`, `domains`): a listed domain blocks itself and all its subdomains
  (`example.com` blocks `news.example.com`, not `badexample.com`). The file may be a plain list, a
  hosts file (`0.0.0.0 example.com`) or a list of URLs (the host is taken); `#` starts a comment;
  case and a leading `www.` are ignored. Lookup is a set probe per domain suffix, so a list of
  millions of domains (UT1's adult list is ~4.6 M) costs one hash lookup per label of the host.
  → reason `url_blocklist:domain`
- **URL substrings** (`url_substrings_file`, `url_substrings`): blocks any URL containing one,
  compared lowercased. → `url_blocklist:url`
- **banned words** (`banned_words_file`, `banned_words`): blocks a URL when a banned word appears as
  a whole token of the lowercased URL (tokens split at anything that is not a letter or a digit), as
  FineWeb does with UT1's keyword lists; one regular expression over all words. → `url_blocklist:word`

The domain is the `domain` column when present and non-null (the schema's lowercased host without
`www.`), else it is parsed from `url`. Rows with neither pass. A configured file that does not exist
fails `check()` with its path.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Iterable, Sequence
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
from pydantic import Field

from processors.base import Filter, Params, ProcessorError


_COMMENT = re.compile(r"\s+#")


def normalize_domain(value: str) -> str:
    """'https://WWW.Example.com:8080/x' / 'www.example.com.' → 'example.com'."""
    value = value.strip().lower()
    if "/" in value or ":" in value:
        host = urlsplit(value if "//" in value else f"//{value}").hostname or ""
    else:
        host = value
    host = host.strip(".")
    return host[4:] if host.startswith("www.") else host


def read_entries(path: Path, what: str) -> list[str]:
    """Non-empty, non-comment lines of a list file; a missing file is a ProcessorError naming it."""
    if not path.is_file():
        raise ProcessorError(f"url_blocklist: {what} {str(path)!r} does not exist")
    entries = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(_COMMENT.split(line, 1)[0])
    return entries


def _domain_entry(line: str) -> str:
    # hosts-file lines ("0.0.0.0 example.com") name the domain last
    return normalize_domain(line.split()[-1])


class UrlBlocklistParams(Params):
    domains_file: str | None = Field(None, description="file of blocked domains (subdomains blocked too)")
    domains: list[str] = Field(default_factory=list, description="blocked domains, inline")
    url_substrings_file: str | None = Field(None, description="file of substrings that block a URL")
    url_substrings: list[str] = Field(default_factory=list, description="substrings that block a URL, inline")
    banned_words_file: str | None = Field(None, description="file of words that block a URL as whole URL tokens")
    banned_words: list[str] = Field(default_factory=list, description="words that block a URL, inline")


class UrlBlocklist(Filter):
    """Drops documents from blocked domains, URLs containing blocked substrings, or banned URL words."""

    kind: ClassVar[str] = "url_blocklist"
    Params: ClassVar[type[Params]] = UrlBlocklistParams
    requires: ClassVar[tuple[str, ...]] = ("url",)

    def __init__(self, params: UrlBlocklistParams | None = None) -> None:
        super().__init__(params)
        self._domains: frozenset[str] | None = None
        self._substrings: tuple[str, ...] = ()
        self._words: re.Pattern | None = None

    def __getstate__(self) -> dict:
        # ship the parameters, not a list of millions of domains: each worker loads it in setup()
        return {**self.__dict__, "_domains": None, "_substrings": (), "_words": None}

    def setup(self) -> None:
        if self._domains is not None:
            return
        p: UrlBlocklistParams = self.params
        files = [(p.domains_file, "domains_file"), (p.url_substrings_file, "url_substrings_file"),
                 (p.banned_words_file, "banned_words_file")]
        loaded: dict[str, list[str]] = {}
        for value, what in files:
            loaded[what] = read_entries(Path(value).expanduser(), what) if value is not None else []
        domains = {_domain_entry(d) for d in [*loaded["domains_file"], *p.domains]}
        domains.discard("")
        substrings = {s.strip().lower() for s in [*loaded["url_substrings_file"], *p.url_substrings]}
        substrings.discard("")
        words = {w.strip().lower() for w in [*loaded["banned_words_file"], *p.banned_words]}
        words.discard("")
        if not (domains or substrings or words):
            raise ProcessorError(
                "url_blocklist: nothing to block; give domains_file, domains, url_substrings(_file) or "
                "banned_words(_file), with at least one entry")
        self._domains = frozenset(domains)
        self._substrings = tuple(sorted(substrings))
        if words:
            alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
            self._words = re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])")

    def blocked_domain(self, domain: str) -> bool:
        """Whether `domain` or one of its parent domains is listed."""
        domains = self._domains
        if not domains or not domain:
            return False
        while True:
            if domain in domains:
                return True
            dot = domain.find(".")
            if dot < 0:
                return False
            domain = domain[dot + 1:]

    def reason(self, url: str | None, domain: str | None) -> str | None:
        if domain is None and url:
            domain = normalize_domain(url)
        if domain and self.blocked_domain(domain if not domain.startswith("www.") else domain[4:]):
            return "domain"
        if not url:
            return None
        lower = url.lower()
        if self._substrings and any(s in lower for s in self._substrings):
            return "url"
        if self._words is not None and self._words.search(lower):
            return "word"
        return None

    def decide(self, batch: pa.Table) -> tuple[np.ndarray, Sequence[str | None]]:
        if self._domains is None:
            self.setup()
        urls = batch.column("url").to_pylist()
        domains: Iterable[str | None] = (batch.column("domain").to_pylist() if "domain" in batch.column_names
                                         else [None] * len(urls))
        reasons = [self.reason(u, d) for u, d in zip(urls, domains)]
        keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
        return keep, [None if r is None else f"{self.kind}:{r}" for r in reasons]
