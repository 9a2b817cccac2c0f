"""The extract pre-pass: reject, before main-text extraction, pages a later filter is sure to drop.

Main-text extraction (trafilatura, ~20 ms of CPU a page) is the most expensive step of a crawl
pipeline, and most pages are dropped right after it: on the 1,153 pages of shared/data/web,
Gopher's quality rules and language ID drop about 70%. Some of those drops can be known without
the main text, exactly:

- the main text is a part of the page's visible text (the extractor only removes boilerplate);
- a rule "at least N words" or "at least N occurrences of these words" that the *whole visible
  text* already fails is failed by any part of it.

So a later filter can hand the extract stage `MinCountRule`s (`Filter.superset_rules`); the
extraction child turns the page into its whole visible text with resiliparse (~2 ms), counts, and
skips trafilatura when a rule fails. Only such monotone "too few" rules qualify: ratios, maxima
and language ID can go either way on a part of a text, and are left to the filters themselves.

The pre-pass can only be wrong where the visible text it builds holds fewer words than the
extractor's output, which tokenisation differences could in principle cause; the visible text
keeps every element the extractor may read (noscript, form fields, comments included) and splits
words at every element boundary. `benchmarks/bench_prefilter.py` measures the agreement with the
full path (1,153 of 1,153 pages decided the same, identical texts, on the shared pages).

No numpy, pyarrow or pydantic here: the extraction child imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MinCountRule:
    """Drop a document with fewer than `min_count` words, or, with `words`, fewer than
    `min_count` occurrences of those words (compared lowercased). `reason` is the drop reason the
    filter would give, with its stage prefix (`gopher_quality:stop_words`)."""

    reason: str
    min_count: int
    words: tuple[str, ...] | None = None


def visible_text(html: str) -> str:
    """Every piece of text a main-text extractor could keep: the whole rendered text of the page,
    with form fields, <noscript> and comments, and line breaks between blocks."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    return extract_plain_text(
        HTMLTree.parse(html),
        preserve_formatting=True,
        main_content=False,  # the superset: boilerplate included
        list_bullets=False,
        alt_texts=False,  # neither alt texts nor link targets are ever in trafilatura's text
        links=False,
        form_fields=True,
        noscript=True,
        comments=True,
    )


def failed_rule(text: str, rules: tuple[MinCountRule, ...]) -> str | None:
    """The reason of the first rule `text` fails, or None."""
    from processors.words import split_words

    words = split_words(text)
    for rule in rules:
        if rule.words is None:
            count = len(words)
        else:
            wanted = frozenset(rule.words)
            longest = max((len(w) for w in wanted), default=0)
            count = 0
            for w in words:
                if len(w) <= longest and w.lower() in wanted:
                    count += 1
                    if count >= rule.min_count:
                        break
        if count < rule.min_count:
            return rule.reason
    return None


def reject_reason(html: str, rules: tuple[MinCountRule, ...]) -> str | None:
    """Why a later filter is sure to drop this page whatever its main text, or None."""
    return failed_rule(visible_text(html), rules) if rules else None
