"""Labelled data for the hygiene stages, built from real shared text (used by
benchmarks/bench_hygiene.py and tests/test_hygiene.py).

- `plant_pii`: personal data in realistic formats (several e-mail, phone and IP styles, in
  English, German, French and Spanish sentences) inserted between the paragraphs of real
  documents, with the exact character span and kind of every planted item. Phone numbers are
  drawn at random inside national formats and kept only when libphonenumber calls them valid
  numbers (so a planted number is a real-looking one, not a string the detector must reject);
  IP addresses are drawn from public ranges.
- `plant_passages`: passages of a held-out text inserted into real documents, verbatim or
  lightly edited (case, punctuation, and one word in about fifteen replaced), with their ids.
- `resiliparse_pages`: main text of the first pages of a shared WARC, fast (resiliparse), for
  tests that need real boilerplate.
"""
from __future__ import annotations

import ipaddress
import random
import re
from dataclasses import dataclass, field

FIRST = ["anna", "jan", "maria", "li", "pierre", "john", "sofia", "lukas", "chloe", "diego", "emma", "noah"]
LAST = ["schmidt", "garcia", "wei", "dubois", "smith", "rossi", "mueller", "martin", "lopez", "brown"]
DOMAINS = ["gmail.com", "web.de", "gmx.net", "yahoo.fr", "orange.fr", "correo.es", "outlook.com",
           "mueller-bau.de", "uni-hamburg.de", "company.co.uk", "163.com", "mail.ru"]

# (country calling code, region, national templates: X a random digit)
PHONE_FORMATS = [
    ("1", "US", ["(XXX) XXX-XXXX", "XXX-XXX-XXXX", "XXX.XXX.XXXX", "+1 XXX XXX XXXX", "+1 (XXX) XXX-XXXX", "1-XXX-XXX-XXXX"]),
    ("49", "DE", ["030 XXXXXXXX", "+49 30 XXXXXXXX", "+49 (0)30 XXXX XXXX", "089/XXXXXXXX", "0171 XXXXXXX",
                  "+49 171 XXXXXXX", "040-XXXXXX-XX", "0049 30 XXXXXXXX"]),
    ("44", "GB", ["+44 20 XXXX XXXX", "020 XXXX XXXX", "07700 XXXXXX", "+44 7700 XXXXXX"]),
    ("33", "FR", ["+33 1 XX XX XX XX", "01 XX XX XX XX", "06 XX XX XX XX", "+33 6 XX XX XX XX"]),
    ("34", "ES", ["+34 91X XXX XXX", "+34 6XX XXX XXX", "91X XX XX XX", "6XX XXX XXX"]),
    ("39", "IT", ["+39 06 XXXX XXXX", "06 XXXXXXXX", "+39 3XX XXX XXXX"]),
    ("1", "US", ["XXXXXXXXXX"]),  # bare digits: found only after a phone word (by design)
    ("91", "IN", ["+91 9XXXX XXXXX"]),
]

SENTENCES = {
    "en": ["For questions, contact {email}.", "Call us on {phone} (Mon-Fri).", "Reach Anna at {email} or {phone}.",
           "The request came from IP address {ip}.", "Phone: {phone}", "Write to {email} for a copy.",
           "Our server at {ip} was down for an hour.", "Tel. {phone} / Email: {email}"],
    "de": ["Bei Fragen wenden Sie sich an {email}.", "Telefon: {phone}", "Rufen Sie uns an unter {phone}.",
           "Der Zugriff erfolgte von der IP-Adresse {ip}.", "Kontakt: {email}, Tel. {phone}",
           "Anmeldungen bitte per Mail an {email}."],
    "fr": ["Pour toute question, écrivez à {email}.", "Appelez le {phone}.", "Téléphone : {phone}",
           "La connexion venait de l'adresse {ip}.", "Contact : {email} ou {phone}."],
    "es": ["Para más información escriba a {email}.", "Llame al {phone}.", "Teléfono: {phone}",
           "El acceso se hizo desde la IP {ip}.", "Contacto: {email}, tel. {phone}"],
}


@dataclass
class Planted:
    text: str
    truth: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, subkind)
    host: str = ""  # the untouched host text


def _email(rng: random.Random) -> str:
    first, last, dom = rng.choice(FIRST), rng.choice(LAST), rng.choice(DOMAINS)
    style = rng.randrange(9)
    if style == 0:
        return f"{first}.{last}@{dom}"
    if style == 1:
        return f"{first[0]}.{last}+news@{dom}"
    if style == 2:
        return f"{first}{rng.randrange(10, 99)}@{dom}"
    if style == 3:
        return f"{first.capitalize()}.{last.capitalize()}@{dom.upper()}"
    if style == 4:
        return f"{last}_{first}@{dom}"
    if style == 5:
        d, tld = dom.rsplit(".", 1)
        return f"{first} (at) {d} (dot) {tld}"
    if style == 6:
        d, tld = dom.rsplit(".", 1)
        return f"{first}.{last} [at] {d} [dot] {tld}"
    if style == 7:
        return f"info@{last}-{first}.de"
    return f"{rng.choice(['jürgen', 'josé', 'zoë', 'françois'])}.{last}@{dom}"  # internationalised local part


def _phone(rng: random.Random) -> str:
    import phonenumbers

    _, region, templates = PHONE_FORMATS[rng.randrange(len(PHONE_FORMATS))]
    tpl = rng.choice(templates)
    for _ in range(200):
        s = "".join(str(rng.randrange(10)) if c == "X" else c for c in tpl)
        try:
            num = phonenumbers.parse(s, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            return s
    raise RuntimeError(f"no valid number for template {tpl}")


def _ipv4(rng: random.Random) -> str:
    while True:
        ip = ipaddress.IPv4Address(rng.getrandbits(32))
        octets = str(ip).split(".")
        if ip.is_global and not ip.is_multicast and sum(len(o) == 1 for o in octets) < 3:
            return str(ip)


def _ipv6(rng: random.Random) -> str:
    while True:
        prefix = rng.choice([0x2A00, 0x2A02, 0x2001, 0x2600, 0x2606, 0x2C0F, 0x2400])
        groups = [prefix] + [rng.getrandbits(16) for _ in range(7)]
        if rng.random() < 0.6:  # a run of zero groups, written compressed
            k = rng.randrange(3, 6)
            groups[k : k + 2] = [0, 0]
        ip = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
        if ip.is_global:
            return ip.compressed if rng.random() < 0.8 else ip.exploded


def _item(kind: str, rng: random.Random) -> tuple[str, str]:
    if kind == "email":
        return _email(rng), "email"
    if kind == "phone":
        return _phone(rng), "phone"
    if rng.random() < 0.6:
        ip = _ipv4(rng)
        return (ip + (f":{rng.choice([80, 443, 8080])}" if rng.random() < 0.2 else "")), "ipv4"
    return _ipv6(rng), "ipv6"


def plant_pii(hosts: list[tuple[str, str]], seed: int, per_doc: int = 3) -> list[Planted]:
    """Insert `per_doc` sentences with PII between the paragraphs of each (lang, text) host."""
    rng = random.Random(seed)
    out = []
    for lang, host in hosts:
        paras = host.split("\n")
        inserts: dict[int, list[tuple[str, list]]] = {}
        for _ in range(per_doc):
            tpl = rng.choice(SENTENCES.get(lang, SENTENCES["en"]))
            pieces, items = [], []
            pos = 0
            for m in re.finditer(r"\{(email|phone|ip)\}", tpl):
                pieces.append(tpl[pos : m.start()])
                value, sub = _item(m.group(1), rng)
                if sub == "ipv4" and ":" in value:  # the port is not part of the address
                    addr = value.split(":")[0]
                    items.append((len("".join(pieces)), addr, sub))
                else:
                    items.append((len("".join(pieces)), value, sub))
                pieces.append(value)
                pos = m.end()
            pieces.append(tpl[pos:])
            inserts.setdefault(rng.randrange(len(paras) + 1), []).append(("".join(pieces), items))
        lines, truth, length = [], [], 0
        for i in range(len(paras) + 1):
            for sentence, items in inserts.get(i, []):
                truth += [(length + off, length + off + len(v), sub) for off, v, sub in items]
                lines.append(sentence)
                length += len(sentence) + 1
            if i < len(paras):
                lines.append(paras[i])
                length += len(paras[i]) + 1
        out.append(Planted("\n".join(lines), truth, host))
    return out


def _edit(passage: str, rng: random.Random) -> str:
    """Light edits: one word in about fifteen replaced, case and punctuation changed."""
    words = passage.split(" ")
    for i in range(rng.randrange(0, 8), len(words), 15):
        words[i] = rng.choice(["very", "also", "then", "still", "much", "just"])
    text = " ".join(words)
    text = text.replace(" , ", ", ").replace(" . ", ". ").replace(",", ";", 2)
    return text[:1].lower() + text[1:].upper() if rng.random() < 0.3 else text


def plant_passages(docs: list[str], passages: list[str], seed: int, n_exact: int,
                   n_edited: int) -> tuple[list[str], dict[int, tuple[int, str]]]:
    """Insert passages into distinct documents at paragraph boundaries. Returns the new texts and
    {document index: (passage index, "exact" | "edited")}."""
    rng = random.Random(seed)
    chosen = rng.sample(range(len(docs)), n_exact + n_edited)
    which = rng.sample(range(len(passages)), n_exact + n_edited)
    out = list(docs)
    truth = {}
    for k, (d, p) in enumerate(zip(chosen, which)):
        mode = "exact" if k < n_exact else "edited"
        passage = passages[p] if mode == "exact" else _edit(passages[p], rng)
        paras = out[d].split("\n")
        at = rng.randrange(len(paras) + 1)
        out[d] = "\n".join(paras[:at] + [passage] + paras[at:])
        truth[d] = (p, mode)
    return out, truth


def resiliparse_pages(path: str, limit: int) -> list[tuple[str, str, str]]:
    """(record id, url, main text) of the first `limit` HTML responses of a WARC."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    out = []
    with open(path, "rb") as f:
        for n, rec in enumerate(ArchiveIterator(f, record_types=WarcRecordType.response)):
            if n >= limit:
                break
            raw = rec.reader.read()
            text = extract_plain_text(bytes_to_str(raw, detect_encoding(raw)), main_content=True)
            if text.strip():
                out.append((rec.record_id, rec.headers.get("WARC-Target-URI"), text))
    return out


def wikitext_paragraphs(path: str, min_words: int = 40) -> list[str]:
    """Paragraphs (lines) of a WikiText-2 file with at least `min_words` tokens, de-tokenised
    enough to read as prose (`@-@` and spaces around punctuation undone)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("=") or len(line.split()) < min_words:
                continue
            line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
            line = re.sub(r" ([.,;:!?)'])", r"\1", line).replace("( ", "(")
            out.append(line)
    return out
