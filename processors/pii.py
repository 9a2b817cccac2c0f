"""PII: e-mail addresses, IP addresses and phone numbers, redacted with typed placeholders.

Each kind has an action: `redact` (replace the match with its placeholder, e.g. `<EMAIL_ADDRESS>`),
`drop` (drop the whole document, reason `pii:<kind>`), `count` (leave the text, count only) or
`off`. Matches are counted per kind in every mode (`pii_email`, `pii_ipv4`, `pii_ipv6`,
`pii_phone`), and every candidate rejected as "not personal data" is counted under the rule that
rejected it (`skip_*`), so a user sees what the guards cost.

How each kind is found, and what is deliberately *not* PII:

- **e-mail**: an RFC 5322-shaped address (local part in any script, as RFC 6531 allows; ASCII
  domain or punycode) with an alphabetic top-level domain, plus the common
  obfuscations `name (at) host (dot) com` / `name [at] host [dot] com`. Not PII: file names that
  look like addresses (`logo@2x.png`, `icon@3x.svg`: the "TLD" is a file extension,
  `skip_email_filename`) and the reserved documentation domains of RFC 2606/6761 (`example.com`,
  `*.example`, `*.test`, `*.invalid`, `localhost`: `skip_email_reserved`).
- **IPv4 / IPv6**: candidates validated by the standard library's `ipaddress`; only *global*
  addresses are PII. Private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local,
  multicast, unspecified, the documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24,
  2001:db8::/32) and other reserved ranges are not (`skip_ip_nonpublic`). A dotted quad after a
  version word (`version 1.2.0.4`, `v2.0.0.1`, `release`, `build`) is a version number
  (`skip_ip_version`); a dotted run with five or more parts (`1.3.6.1.4.1`: an OID) is never a
  candidate.
- **phone**: candidates are runs of 7-15 digits with the separators phone numbers use (space,
  `-`, `.`, `/`, parentheses, a leading `+` or `00`); each is checked by libphonenumber
  (`phonenumbers`, Google's metadata): a number with a country code must be a valid number of
  that country, a national number a valid number of one of `phone_regions`. Before that, shapes
  that are not phone numbers are rejected: dates (`2020-08-14`, `14.08.2020`,
  `skip_phone_date`), ISBNs (after `ISBN`, or 13 digits starting 978/979, `skip_phone_isbn`),
  amounts (a currency symbol or code next to it, or plain thousands grouping like `1 250 000`,
  `skip_phone_amount`), and bare digit runs without any separator, `+` or a phone word
  (`tel`, `phone`, `fax`, ... within 24 characters before: `skip_phone_bare`) -- in code and
  tables these are constants, ids and timestamps, and `2147483647` is a valid US number.
  Version numbers never reach the phone check (too few digits, or caught as IPv4 shapes first).

Code literals: hex constants and identifiers are excluded by the word-boundary rules above (a
match may not touch a letter, digit or `_`), and `std::vector`-like tokens are not hexadecimal
IPv6 candidates. Spans never overlap: IPs are found first, then e-mail, then phones.

Why regular expressions plus `ipaddress`/`phonenumbers` rather than Presidio: Presidio's
recognisers for these kinds are the same regexes plus libphonenumber, behind a spaCy model that
must be downloaded; nothing here may download a model at run time.
"""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from processors.base import BatchResult, Params, Processor, ProcessorError

Action = Literal["redact", "drop", "count", "off"]
KINDS = ("email", "ip_address", "phone")
PLACEHOLDERS = {"email": "<EMAIL_ADDRESS>", "ip_address": "<IP_ADDRESS>", "phone": "<PHONE_NUMBER>"}

_LOCAL = r"[^\W_](?:[\w.%+\-]{0,62}[\w%+\-])?"  # letters of any script (RFC 6531 local parts)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(
    rf"(?<![\w.%+\-]){_LOCAL}@((?:{_LABEL}\.)+[A-Za-z]{{2,24}})(?![\w\-]|\.[A-Za-z0-9])"
)
_AT = r"\s*[\[(]\s*(?:at|AT|@)\s*[\])]\s*"
_DOT = r"\s*[\[(]\s*(?:dot|DOT|\.)\s*[\])]\s*"
EMAIL_OBFUSCATED = re.compile(
    rf"(?<![\w.%+\-]){_LOCAL}{_AT}({_LABEL}(?:(?:{_DOT}|\.){_LABEL})*(?:{_DOT}|\.)[A-Za-z]{{2,24}})(?![\w\-])"
)
_AT_RE = re.compile(_AT)
_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp ico tif tiff avif js mjs css map json xml txt py html htm php "
    "pdf zip gz mp3 mp4 webm woff woff2 ttf".split()
)
_RESERVED_TLDS = frozenset(("example", "test", "invalid", "localhost", "local"))
_RESERVED_DOMAINS = frozenset(("example.com", "example.org", "example.net"))

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\w)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|(?:\d{1,3}\.){3}\d{1,3})(?![\w:]|\.\w)")
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bversions?|\bver\.?|\bv|\brelease|\bbuild|\brev\.?|\bsections?|\bchapter|§|\bfig\.?|"
    r"\btable|\bstep|\bclause|\brule)\W{0,3}$"
)

PHONE = re.compile(
    r"(?<![\w+\-./,])(?:\+|\(\s*\+?)?\d(?:[\d .\-/()\u00a0]){5,24}\d(?![\w]|[.,/\-]\d)"
)
_PHONE_WORD = re.compile(  # whole words (German compounds: Telefonnummer), not "E-Mobilität"
    r"(?i)(?:\b(?:tel|phone|fon|telefon|t[ée]l[ée]phone|t[ée]l|tel[ée]fono|telefone|m[óo]vil|mobile?|handy|"
    r"fax|call|ruf|whatsapp|kontakt|contact|hotline|helpline|inquiry|tlf)(?:nummer|number|nr)?\b|电话|☎|📞)"
    r"[^\n\d]{0,24}$"
)
_DATE = re.compile(
    r"^\d{1,4}\s?[./\-]\s?\d{1,2}\s?[./\-]\s?\d{1,4}$|\b(?:1[5-9]|20)\d\d[./\-]\d{1,2}[./\-]\d{1,2}\b|"
    r"\b\d{1,2}[./\-]\d{1,2}[./\-](?:1[5-9]|20)\d\d\b"
)
_DECIMAL = re.compile(r"(?:^|[^\d.])\d\.\d|\d\.\d(?:$|[^\d.])|^\d{1,3}\.\d{4,}")  # 1-digit dot groups, 0.577...
_RANGE = re.compile(r"^([1-9]\d*)\s?[-–]\s?([1-9]\d*)$")
_NANP = re.compile(r"^(?:1[\s.\-])?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}$")
_TRUNK = re.compile(r"^\(?0\d{1,5}\)?[\s/\-.]\s?\d")
_YEARS = re.compile(r"^\(?(?:1[5-9]\d\d|20\d\d)(?:\W+(?:1[5-9]\d\d|20\d\d))+\)?$")
_ODD_SPACING = re.compile(r"\( | \)| \.|\. |\s{2,}|[.\-/]{2,}")
_THOUSANDS = re.compile(r"^[1-9]\d{0,2}(?:[ .,\u00a0]\d{3})+$")
_CURRENCY = re.compile(r"(?i)(?:[$€£¥₹]|\b(?:usd|eur|gbp|chf|jpy|rs|inr|dm|kr)\.?)\s*$")
_CURRENCY_AFTER = re.compile(r"(?i)^\s*(?:[$€£¥₹]|(?:usd|eur|gbp|chf|jpy|euro?s?|dollars?)\b)")
_ISBN_BEFORE = re.compile(r"(?i)(?:isbn(?:-1[03])?|issn|doi|arxiv)[:\s]*$")


class PiiParams(Params):
    email: Action = Field("redact", description="e-mail addresses: redact | drop | count | off")
    ip_address: Action = Field("redact", description="public IPv4/IPv6 addresses: redact | drop | count | off")
    phone: Action = Field("redact", description="phone numbers: redact | drop | count | off")
    phone_regions: list[str] = Field(
        ["US", "GB", "DE", "FR", "ES", "IT", "NL", "AT", "CH", "IN", "AU", "BR"],
        description="regions (ISO 3166 alpha-2) whose national formats count as phone numbers; "
        "numbers with a +country code are checked against their own country",
    )
    placeholders: dict[str, str] = Field(
        dict(PLACEHOLDERS), description="replacement text per kind (email, ip_address, phone)"
    )

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        return [r.upper() for r in v]

    @field_validator("placeholders")
    @classmethod
    def _known_kinds(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kind(s) {unknown}; kinds are {', '.join(KINDS)}")
        return {**PLACEHOLDERS, **v}


def find_emails(text: str, skips: Counter) -> list[tuple[int, int, str]]:
    patterns = ([EMAIL] if "@" in text else []) + ([EMAIL_OBFUSCATED] if _AT_RE.search(text) else [])
    out = []
    for pattern in patterns:
        for m in pattern.finditer(text):
            domain = re.sub(r"\s*[\[(]\s*(?:dot|DOT|\.)\s*[\])]\s*", ".", m.group(1)).lower()
            tld = domain.rsplit(".", 1)[-1]
            if tld in _FILE_EXTENSIONS:
                skips["skip_email_filename"] += 1
            elif tld in _RESERVED_TLDS or domain in _RESERVED_DOMAINS or domain.endswith(
                tuple("." + d for d in _RESERVED_DOMAINS)
            ):
                skips["skip_email_reserved"] += 1
            else:
                out.append((m.start(), m.end(), "email"))
    return out


def _is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def find_ips(text: str, skips: Counter, shaped: list[tuple[int, int]] | None = None) -> list[tuple[int, int, str]]:
    """Public IP addresses; `shaped` collects every address-shaped span, kept or not, so that a
    private address or a version number is never taken for a phone number afterwards."""
    out = []
    shaped = [] if shaped is None else shaped
    if "." in text:
        for m in IPV4.finditer(text):
            shaped.append(m.span())
            if _VERSION_BEFORE.search(text, max(0, m.start() - 14), m.start()) or sum(
                len(o) == 1 for o in m.group().split(".")
            ) >= 3:  # 2.7.2.2, 8.2.4.44: version and section numbers (also 8.8.8.8, a resolver)
                skips["skip_ip_version"] += 1
            elif _is_public(m.group()):
                out.append((m.start(), m.end(), "ipv4"))
            else:
                skips["skip_ip_nonpublic"] += 1
    if "::" in text or text.count(":") >= 7:
        for m in IPV6.finditer(text):
            s = m.group()
            if sum(1 for g in s.split(":") if g) < 3:
                continue  # `::1`, `1::2` (slice syntax), `a::b`: real addresses show 3+ groups
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                continue  # times (12:30:45), C++ scopes and other colon runs
            shaped.append(m.span())
            if _is_public(s):
                out.append((m.start(), m.end(), "ipv6"))
            else:
                skips["skip_ip_nonpublic"] += 1
    return out


@lru_cache(maxsize=1)
def _phonenumbers():
    try:
        import phonenumbers
    except ImportError as e:  # pragma: no cover - a broken install
        raise ProcessorError("pii: phone detection needs `phonenumbers` (pip install phonenumberslite)") from e
    return phonenumbers


def _valid_phone(candidate: str, regions: tuple[str, ...]) -> bool:
    pn = _phonenumbers()
    digits = re.sub(r"\D", "", candidate)
    international = candidate.lstrip("( ").startswith("+") or (digits.startswith("00") and not digits.startswith("000"))
    if international:
        number = "+" + digits[2:] if not candidate.lstrip("( ").startswith("+") else candidate
        try:
            return pn.is_valid_number(pn.parse(number, None))
        except pn.NumberParseException:
            return False
    for region in regions:
        try:
            if pn.is_valid_number(pn.parse(candidate, region)):
                return True
        except pn.NumberParseException:
            continue
    return False


def find_phones(text: str, regions: tuple[str, ...], skips: Counter, taken: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    out = []
    for m in PHONE.finditer(text):
        s, e = m.start(), m.end()
        cand = m.group()
        # unbalanced closing parenthesis at the end: "(call 030 1234567)" keeps its ')' outside
        while cand.endswith(")") and cand.count(")") > cand.count("("):
            cand, e = cand[:-1].rstrip(), s + len(cand[:-1].rstrip())
        if cand.startswith("(") and cand.count("(") > cand.count(")"):
            cand, s = cand[1:].lstrip(), e - len(cand[1:].lstrip())
        digits = sum(c.isdigit() for c in cand)
        if not 7 <= digits <= 15:
            continue
        if any(s < te and ts < e for ts, te in taken):
            continue
        before = text[max(0, s - 30) : s]
        after = text[e : e + 8]
        if _DATE.search(cand) or _YEARS.match(cand):
            skips["skip_phone_date"] += 1
            continue
        if _ODD_SPACING.search(cand):  # "1806 . 300", "1995 ( 1996": tokenised prose, not a number
            skips["skip_phone_spacing"] += 1
            continue
        if _ISBN_BEFORE.search(before) or (digits == 13 and cand.lstrip("(").startswith(("978", "979"))):
            skips["skip_phone_isbn"] += 1
            continue
        if _CURRENCY.search(before) or _CURRENCY_AFTER.match(after) or _THOUSANDS.match(cand):
            skips["skip_phone_amount"] += 1
            continue
        if _DECIMAL.search(cand):
            skips["skip_phone_decimal"] += 1
            continue
        rng = _RANGE.match(cand)
        if rng and len(rng.group(1)) == len(rng.group(2)) and int(rng.group(1)) < int(rng.group(2)):
            skips["skip_phone_range"] += 1
            continue
        international = cand.lstrip("( ").startswith(("+", "00"))
        if not international and not _PHONE_WORD.search(text, max(0, s - 40), s):
            separated = any(c in " -./()\u00a0" for c in cand)
            if not separated:
                skips["skip_phone_bare"] += 1
                continue
            if not (_NANP.match(cand) or _TRUNK.match(cand)):
                skips["skip_phone_context"] += 1
                continue
        if _valid_phone(cand, regions):
            out.append((s, e, "phone"))
    return out


# RE2 patterns (run by Arrow over a whole batch in C++, ~20x Python's `re`) that match every
# document in which the Python patterns above could match: only those documents are scanned.
PREFILTERS = {
    "ip": r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|:[0-9A-Fa-f]{0,4}:",
    "email": r"@|[\[(]\s*(?:at|AT|@)\s*[\])]",
    "phone": r"\d[\d .\-/()\x{a0}]{5,24}\d",
}


def detect(text: str, params: PiiParams, skips: Counter, scan: frozenset[str] = frozenset(PREFILTERS)) -> list[tuple[int, int, str]]:
    """Non-overlapping detections (start, end, subkind) in text order; subkinds: email, ipv4,
    ipv6, phone. Kinds whose action is `off`, or not in `scan` (the prefilter found no
    candidate), are not searched."""
    found: list[tuple[int, int, str]] = []
    shaped: list[tuple[int, int]] = []
    if "ip" in scan:
        if params.ip_address != "off":
            found += find_ips(text, skips, shaped)
        elif params.phone != "off":
            find_ips(text, Counter(), shaped)  # address shapes still block phone candidates
    if params.email != "off" and "email" in scan:
        for s, e, k in find_emails(text, skips):
            if not any(s < fe and fs < e for fs, fe, _ in found):
                found.append((s, e, k))
    if params.phone != "off" and "phone" in scan:
        found += find_phones(text, tuple(params.phone_regions), skips, shaped + [(s, e) for s, e, _ in found])
    found.sort()
    return found


def kind_of(subkind: str) -> str:
    return "ip_address" if subkind in ("ipv4", "ipv6") else subkind


class Pii(Processor):
    """Finds PII per document; redacts, drops or counts per kind (see the module docstring)."""

    kind = "pii"
    Params = PiiParams
    requires = ("text",)
    summary_counters: ClassVar[tuple[str, ...]] = ("pii_email", "pii_ipv4", "pii_ipv6", "pii_phone")

    def setup(self) -> None:
        if self.params.phone != "off":
            _phonenumbers()
        for region in self.params.phone_regions:
            if region not in _phonenumbers().SUPPORTED_REGIONS:
                raise ProcessorError(f"pii: phone_regions: {region!r} is not a region libphonenumber knows")

    def process(self, batch: pa.Table) -> BatchResult:
        if batch.num_rows == 0 or "text" not in batch.column_names:
            return BatchResult(batch)
        p = self.params
        actions = {"email": p.email, "ip_address": p.ip_address, "phone": p.phone}
        counters: Counter = Counter()
        drops: Counter = Counter()
        column = batch.column("text")
        texts = column.to_pylist()
        masks = {k: np.asarray(pc.fill_null(pc.match_substring_regex(column, pat), False)) for k, pat in PREFILTERS.items()}
        any_candidate = np.logical_or.reduce(list(masks.values()))
        keep = np.ones(len(texts), dtype=bool)
        changed = False
        for i in np.flatnonzero(any_candidate).tolist():
            text = texts[i]
            found = detect(text, p, counters, frozenset(k for k, m in masks.items() if m[i]))
            if not found:
                continue
            counters["docs_with_pii"] += 1
            for _, _, sub in found:
                counters[f"pii_{sub}"] += 1
            dropping = [k for k in KINDS if actions[k] == "drop" and any(kind_of(s) == k for _, _, s in found)]
            if dropping:
                keep[i] = False
                drops[f"pii:{dropping[0]}"] += 1
                continue
            redact = [(s, e, kind_of(sub)) for s, e, sub in found if actions[kind_of(sub)] == "redact"]
            if redact:
                pieces, pos = [], 0
                for s, e, k in redact:
                    pieces += [text[pos:s], p.placeholders[k]]
                    pos = e
                pieces.append(text[pos:])
                texts[i] = "".join(pieces)
                counters["docs_redacted"] += 1
                changed = True
        table = batch
        if changed:
            idx = batch.column_names.index("text")
            table = batch.set_column(idx, batch.schema.field("text"), pa.array(texts, type=batch.schema.field("text").type))
        if not keep.all():
            table = table.filter(pa.array(keep))
        return BatchResult(table, drops, counters)
