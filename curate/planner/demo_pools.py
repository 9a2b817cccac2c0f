"""Real pools from the shared data, for `curate plan fit` before the classifier stage exists.

- `wiki`: WikiText-2 valid + test, de-tokenised (the corpus ships with spaces around punctuation,
  ` @-@ ` for hyphens); one document per top-level article (`= Title =` headings).
- `web_high` / `web_low`: main text of the real HTML pages in web/*.warc.gz, extracted with
  trafilatura (records read with fastwarc), English pages only (a stop-word test, below: the law
  assumes pools that help one target, and German pages hurt an English model at proxy scale),
  split in two halves (by characters) of a Gopher-like quality score:
      score = (share of words in lines ending in terminal punctuation)   # C4 / FineWeb line rule
              - 0.5 x (number of Gopher rules broken)                   # Rae et al. 2021, A.1.1
  Pages with fewer than 20 words are dropped as empty extractions. WikiText's `<unk>`
  placeholders are removed.

The pools are written in the layout pools.json documents: one Parquet file per pool with a `text`
column, and pools.json beside them with counts (unique_tokens counted with the given tokenizer).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .pools import Pool, PoolsFile, save_pools

# English and German function words: the shared pages are mostly in these two languages, and
# Gopher's stop-word rule ("at least two of the, be, to, of, and, that, have, with") would reject
# every German page for its language rather than its quality.
_STOP = {"the", "be", "to", "of", "and", "that", "have", "with",
         "der", "die", "das", "und", "ist", "mit", "von", "zu", "den", "nicht"}
_BULLET = re.compile(r"^\s*[\u2022\-\*\u25cf\u25aa\u2023]")


def detokenize_wikitext(text: str) -> str:
    """Undo WikiText's tokenisation: ` @-@ ` -> `-`, ` @,@ ` -> `,`, spaces before punctuation."""
    t = re.sub(r" *<unk> *", " ", text).strip()
    t = t.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    t = re.sub(r" ([.,;:!?%)\]}])", r"\1", t)
    t = re.sub(r"([(\[{$]) ", r"\1", t)
    t = re.sub(r" (n't|'s|'re|'ve|'m|'ll|'d)\b", r"\1", t)
    t = re.sub(r'" (.*?) "', r'"\1"', t)
    return t


def wikitext_articles(paths: list[Path]) -> list[str]:
    """Split WikiText files into articles at top-level headings (` = Title = `)."""
    docs: list[str] = []
    cur: list[str] = []
    head = re.compile(r"^ = [^=].* = $")
    for p in paths:
        for line in p.read_text(encoding="utf-8").splitlines():
            if head.match(line):
                if cur:
                    docs.append("\n".join(cur).strip())
                cur = [detokenize_wikitext(line.strip(" ="))]
            elif line.strip():
                s = line.strip()
                s = detokenize_wikitext(s.strip(" =") if s.startswith("=") else s)
                if s:
                    cur.append(s)
    if cur:
        docs.append("\n".join(cur).strip())
    return [d for d in docs if len(d.split()) >= 20]


def warc_main_texts(paths: list[Path], fast: bool = True) -> list[str]:
    """Main text of every HTML response in the WARCs (trafilatura on the raw HTML)."""
    import trafilatura
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = []
    for p in paths:
        with open(p, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
                html = rec.reader.read()
                try:
                    text = trafilatura.extract(html.decode("utf-8", errors="replace"), fast=fast,
                                               include_comments=False, include_tables=False)
                except Exception:  # a malformed page is a skipped page, not a failed build
                    text = None
                if text and len(text.split()) >= 20:
                    out.append(text)
    return out


_TERMINAL = (".", "!", "?", '"', "\u201d", "\u201c", "\u00bb", "\u3002")


def terminal_punct_fraction(text: str) -> float:
    """Share of words in lines ending with terminal punctuation: prose scores high, menus, lists
    and link farms low."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    total = sum(len(ln.split()) for ln in lines)
    good = sum(len(ln.split()) for ln in lines if ln.endswith(_TERMINAL))
    return good / max(total, 1)


def quality_score(text: str) -> float:
    return terminal_punct_fraction(text) - 0.5 * len(gopher_failures(text))


_EN = {"the", "and", "of", "to", "a", "in", "is", "that", "for", "it", "with", "as", "was", "on", "are", "this",
       "be", "by"}
_DE = {"der", "die", "und", "das", "ist", "nicht", "mit", "den", "von", "zu", "ein", "eine", "auf", "sich", "im",
       "auch", "dem"}


def is_english(text: str) -> bool:
    """More than 10% of words are common English function words, and more English than German
    ones: enough to separate the shared pages' English from their German, Spanish, French, Chinese."""
    words = [w.lower().strip(".,;:!?()\"'") for w in text.split()]
    en = sum(w in _EN for w in words) / max(len(words), 1)
    de = sum(w in _DE for w in words) / max(len(words), 1)
    return en > 0.1 and en > de


def split_by_quality(texts: list[str]) -> tuple[list[str], list[str]]:
    """Higher-scoring half (by characters) and the rest, each in original order."""
    scores = [quality_score(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -scores[i])
    total, acc, high = sum(len(t) for t in texts), 0, set()
    for i in order:
        if acc >= total / 2:
            break
        high.add(i)
        acc += len(texts[i])
    return [t for i, t in enumerate(texts) if i in high], [t for i, t in enumerate(texts) if i not in high]


def gopher_failures(text: str) -> list[str]:
    """The Gopher quality rules a document breaks (empty list: high quality)."""
    words = text.split()
    fails = []
    n = len(words)
    if not 50 <= n <= 100_000:
        fails.append("word_count")
    mean_len = sum(len(w) for w in words) / max(n, 1)
    if not 3 <= mean_len <= 10:
        fails.append("mean_word_length")
    if (text.count("#") + text.count("...") + text.count("\u2026")) / max(n, 1) > 0.1:
        fails.append("symbol_ratio")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and sum(bool(_BULLET.match(ln)) for ln in lines) / len(lines) > 0.9:
        fails.append("bullet_lines")
    if lines and sum(ln.rstrip().endswith(("...", "\u2026")) for ln in lines) / len(lines) > 0.3:
        fails.append("ellipsis_lines")
    if sum(any(c.isalpha() for c in w) for w in words) / max(n, 1) < 0.8:
        fails.append("alpha_words")
    if len({w.lower().strip(".,;:!?\"'()") for w in words} & _STOP) < 2:
        fails.append("stop_words")
    return fails


def write_pool(name: str, texts: list[str], out_dir: Path, count_tokens: Callable[[list[str]], int], *,
               source: str, domain: str, bucket: str) -> Pool:
    out_dir.mkdir(parents=True, exist_ok=True)
    f = out_dir / f"{name}.parquet"
    pq.write_table(pa.table({"text": texts}), f)
    return Pool(name=name, source=source, domain=domain, quality_bucket=bucket, documents=len(texts),
                characters=sum(len(t) for t in texts), unique_tokens=max(1, count_tokens(texts)),
                path=f.name)


def build_demo_pools(shared_data: Path, out_dir: Path, count_tokens: Callable[[list[str]], int],
                     warcs: int | None = None) -> Path:
    """Write wiki / web_high / web_low pools under out_dir and return the pools.json path.

    `warcs` limits how many of the web/*.warc.gz files are read (the CI test reads one).
    """
    out_dir = Path(out_dir)
    wiki = wikitext_articles([shared_data / "reference" / "wikitext-2-valid.txt",
                              shared_data / "reference" / "wikitext-2-test.txt"])
    files = sorted((shared_data / "web").glob("*.warc.gz"))[: warcs or None]
    web = [t for t in warc_main_texts(files) if is_english(t)]
    high, low = split_by_quality(web)
    pools = [
        write_pool("wiki", wiki, out_dir, count_tokens, source="wikitext-2", domain="encyclopedia", bucket="high"),
        write_pool("web_high", high, out_dir, count_tokens, source="web-warc", domain="web", bucket="high"),
        write_pool("web_low", low, out_dir, count_tokens, source="web-warc", domain="web", bucket="low"),
    ]
    pj = out_dir / "pools.json"
    save_pools(PoolsFile(tokenizer="proxy-bpe-4096", pools=pools), pj)
    return pj
