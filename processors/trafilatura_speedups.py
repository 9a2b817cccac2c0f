"""Exact, faster stand-ins for trafilatura's most expensive XPath expressions.

About half of trafilatura's CPU time (measured on the 559 pages of shared/data/web that the
pre-pass lets through: 12.6 of 24.7 s) goes into XPath expressions that prune boilerplate
(`OVERALL_DISCARD_XPATH`, the comment and infinite-scroll prunes, ...) or find the content
container (`BODY_XPATH`). They call EXSLT's
`re:test` for every candidate element; lxml answers each call through a Python callback with its
argument conversion, which costs far more than the regular expression itself. The same selection
written as a walk over the tree with precompiled `re` patterns selects the same elements, in the
same (document) order, several times faster.

Exactness, not approximation:
- each stand-in is written from the XPath 1.0 semantics of its expression: `.//*[p]` is every
  descendant element of the context node in document order; `@a|@b` used as a string is the
  first of the two attributes in source order; an absent attribute is the empty string;
  `re:test(s, p)` is `re.search(p, s)` (what lxml runs; flag 'i': IGNORECASE); `@x = 's'` is
  an equality test; `.//h1` is "has a descendant h1"; `(.//*[p])[1]` is the first match in
  document order, and `.//*[p][1]` every match that no earlier sibling matching p precedes
  (the position applies to the child step);
- a stand-in replaces an expression only if the expression's text (whitespace-normalised) has the
  SHA-256 recorded here: a trafilatura release that changes an expression keeps its own XPath for
  that one (slower, still right);
- anything other than an element as context (an ElementTree, XPath variables) goes to the XPath;
- `tests/test_trafilatura_speedups.py` runs every stand-in against its XPath on every call made
  while extracting real pages (`checking()`), and compares extracted texts with and without.

The stand-ins are installed in the extraction child (`install()`), in place in trafilatura's
lists (the lists are shared by every module that imported them); `uninstall()` restores them.
"""
from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from typing import Callable, Iterator

_Match = Callable[[object], bool]


def _norm_hash(path: str) -> str:
    return hashlib.sha256(" ".join(path.split()).encode()).hexdigest()


def _first_of(elem, a: str, b: str) -> str:
    """XPath string value of `@a|@b`: the first of the two attributes in source order, else ''."""
    va, vb = elem.get(a), elem.get(b)
    if va is None:
        return vb or ""
    if vb is None:
        return va
    for key in elem.keys():  # both present: source order decides
        if key == a:
            return va
        if key == b:
            return vb
    return va  # not reached


class _StandIn:
    """Callable like an lxml XPath object: `matcher(tree)` -> list of matching descendants."""

    def __init__(self, xpath, tags: tuple[str, ...] | None, match: _Match, select: str = "all") -> None:
        self.xpath = xpath  # the original, for contexts the stand-in does not cover
        self.path = xpath.path
        self.tags = tags
        self.match = match
        # "all": .//*[p]; "first": (.//*[p])[1], the first in document order; "first_child":
        # .//*[p][1], each element matching p that no earlier sibling matching p precedes
        self.select = select

    def __call__(self, tree, **variables):
        if variables or not hasattr(tree, "iterdescendants"):
            return self.xpath(tree, **variables)
        if self.tags is None:
            from lxml.etree import Element  # as a tag filter: elements only (no comments, PIs)

            candidates = tree.iterdescendants(Element)
        else:
            candidates = tree.iterdescendants(*self.tags)
        match = self.match
        if self.select == "all":
            found = [e for e in candidates if match(e)]
        elif self.select == "first":
            found = next(([e] for e in candidates if match(e)), [])
        else:
            tags = self.tags or ()
            found = [e for e in candidates
                     if match(e) and not any(match(s) for s in e.itersiblings(*tags, preceding=True))]
        if _CHECKED is not None:
            self._compare(tree, found)
        return found

    def _compare(self, tree, found: list) -> None:
        expected = self.xpath(tree)
        if len(found) != len(expected) or any(a is not b for a, b in zip(found, expected)):
            raise Mismatch(f"{self.path.split()[0]}...: stand-in selected {len(found)} elements, XPath {len(expected)}")
        _CHECKED[self.path] = _CHECKED.get(self.path, 0) + 1


# ---- the expressions (trafilatura 2.3.x, trafilatura/xpaths.py)

_BOX = ("div", "item", "list", "p", "section", "span")

# OVERALL_DISCARD_XPATH[0]
_OD0_ID = re.compile(
    "^shar|social|viral|newsletter|syndication|tags|sidebar|banner|bread-?crumb|button|author|"
    "^(?:jp-|dpsp-content)|bmdh|footer|Footer|share|Share|nav|Nav|menu|related|message-container|premium|^ad-"
)
_OD0_CLASS = re.compile(
    "^shar|social|viral|newsletter|syndication|tags|sidebar|banner|bread-?crumb|button|author|"
    "^(?:nav|post-nav|ZendeskForm)|subnav|avigation|navbar|navbox|menu|bar| ad |-ad-|(?:^| )ad-|dfp[Aa]d|"
    "outbrain|taboola|criteo|paid-?content|widget|footer|Footer|byline|Byline|share-|sociable|embedded|embed|"
    "tag-list|consent|modal-content|permission|elated|next-|-stories|most-popular|more-on|meta|rating|"
    "attachment|timestamp|user-info|user-profile|-icon|article-infos|message-container|slide|viewport|"
    "overlay|options|expand|obfuscated|blurred|mol-factbox|yin|zlylin|nfoline"
)


def _overall_discard_0(e) -> bool:
    i, c = e.get("id"), e.get("class")
    if i is not None and _OD0_ID.search(i):
        return True
    if c is not None and _OD0_CLASS.search(c):
        return True
    if (i is not None or c is not None) and "cookie" in _first_of(e, "id", "class"):
        return True
    if e.get("data-lp-replacement-content") is not None:
        return True
    role = e.get("role")
    if role is not None and "nav" in role.replace("N", "n"):
        return True
    comp = e.get("data-component")
    return comp is not None and "MostPopularStories" in comp


# OVERALL_DISCARD_XPATH[1]
_OD1_ID = re.compile("reader-comments|akismet")
_OD1_CLASS = re.compile(
    "^hide-|comments-title|nocomments|-reply-|message|akismet|suggest-links|-hide-|hide-print| hidden| hide|"
    "noprint|notloaded"
)


def _overall_discard_1(e) -> bool:
    i, c, s = e.get("id"), e.get("class"), e.get("style")
    if c is not None and (c == "comments-title" or _OD1_CLASS.search(c)):
        return True
    if i is not None and _OD1_ID.search(i):
        return True
    if (i is not None or c is not None) and _first_of(e, "id", "class").startswith("reply-"):
        return True
    if (i is not None or s is not None) and "hidden" in _first_of(e, "id", "style"):
        return True
    if s is not None and ("display:none" in s or "display: none" in s):
        return True
    return e.get("aria-hidden") == "true"


# REMOVE_COMMENTS_XPATH[0] and REMOVE_COMMENTS_AND_LISTS_XPATH[0]
_COMMENTS_ID = re.compile("^(?:[Cc]omment(?!ary)|comol|disqus_thread|dsq-comments)")
_COMMENTS_ID_LISTS = re.compile("^(?:[Cc]omment(?!ary)|comol)")
_COMMENTS_CLASS = re.compile("^[Cc]omment(?!ary)|(?:article|post)-comments")


def _remove_comments(e) -> bool:
    i, c = e.get("id"), e.get("class")
    return (i is not None and _COMMENTS_ID.search(i) is not None) or (
        c is not None and _COMMENTS_CLASS.search(c) is not None
    )


def _remove_comments_and_lists(e) -> bool:
    if e.tag not in ("ol", "ul"):
        return _remove_comments(e)
    # lists: the second predicate asks for the id pattern without the disqus ids (the class
    # pattern is the same in both predicates)
    i, c = e.get("id"), e.get("class")
    return (i is not None and _COMMENTS_ID_LISTS.search(i) is not None) or (
        c is not None and _COMMENTS_CLASS.search(c) is not None
    )


# RAW_TREE_PRUNE_XPATH[0] and [1]
_SCROLL = re.compile("mvp-post-add-(?:box|wrap)|infinite-?scroll")
_MVP = re.compile("mvp-post-add-(?:box|wrap)")


def _raw_tree_prune_0(e) -> bool:
    i, c = e.get("id"), e.get("class")
    if not ((i is not None and _SCROLL.search(i)) or (c is not None and _SCROLL.search(c))):
        return False
    if (i is not None and _MVP.search(i)) or (c is not None and _MVP.search(c)):
        return True
    return next(e.iterdescendants("h1"), None) is None


def _raw_tree_prune_1(e) -> bool:
    c = e.get("class")
    return c is not None and "elementor-share-buttons" in c


# PRECISION_DISCARD_XPATH[1]
_BOTTOM = re.compile(r"(^|\s)bottom|bottom(\s|$)")
_LINK = re.compile(r"(^|\s)link(\s|$)")


def _precision_discard_1(e) -> bool:
    i, c = e.get("id"), e.get("class")
    if i is not None or c is not None:
        first = _first_of(e, "id", "class")
        if _BOTTOM.search(first) or _LINK.search(first):
            return True
    s = e.get("style")
    return s is not None and "border" in s


# TEASER_DISCARD_XPATH[0], DISCARD_IMAGE_ELEMENTS[0]
def _teaser_discard(e) -> bool:
    i, c = e.get("id"), e.get("class")
    return (i is not None and "teaser" in i.replace("T", "t")) or (c is not None and "teaser" in c.replace("T", "t"))


def _discard_image(e) -> bool:
    i, c = e.get("id"), e.get("class")
    return (i is not None and "caption" in i) or (c is not None and "caption" in c)


# (list name, index) -> (SHA-256 of the whitespace-normalised expression, tags, predicate)
# BODY_XPATH[0], [2], [3]: where the main content is
_CONTENT = ("article", "div", "main", "section")
_BODY0_ID = re.compile("(?:entry|article|art)-content|article__content|article(?:-|__)?body|articleBody|body-text")
_BODY0_CLASS = re.compile(
    "post[-_]text|post-body|post-?entry|post[-_]?content|postContent|post_inner_wrapper|article-?text|articleText|"
    "(?:entry|page|text|article|art)-content|article__content|article(?:-|__)?body|articleBody|ArticleContent|"
    "body-text|article__container"
)


def _body_0(e) -> bool:
    i, c = e.get("id"), e.get("class")
    if c is not None and (c == "post" or c == "entry" or _BODY0_CLASS.search(c)):
        return True
    if i is not None and (i == "articleContent" or _BODY0_ID.search(i)):
        return True
    return e.get("itemprop") == "articleBody"


_BODY2_ID = re.compile("^primary|story-body")
_BODY2_FULLTEXT = re.compile("fulltext", re.IGNORECASE)
_BODY2_CLASS = re.compile(
    "^article |post-bodycopy|story-?content|(?:theme|blog|section|single)-content|single-post|main-column|"
    "wpb_text_column|story-body|field-body"
)
_BODY2_CLASS_VALUES = ("postarea", "art-postcontent", "text", "cell", "story")


def _body_2(e) -> bool:
    i, c = e.get("id"), e.get("class")
    if c is not None and (c in _BODY2_CLASS_VALUES or _BODY2_FULLTEXT.search(c) or _BODY2_CLASS.search(c)):
        return True
    if i is not None and (i == "article" or i == "story" or _BODY2_ID.search(i)):
        return True
    return e.get("role") == "article"


_BODY3_ID = re.compile("content-main|content-body|contentBody")
_BODY3_CLASS = re.compile("content[-_]main|content(?:-|__)body")


def _body_3(e) -> bool:
    i, c = e.get("id"), e.get("class")
    if i is not None and (i == "content" or _BODY3_ID.search(i)
                          or "main-content" in i.replace("C", "c").replace("M", "m")):
        return True
    return c is not None and (c == "content" or _BODY3_CLASS.search(c) is not None
                              or "main-content" in c.replace("C", "c").replace("M", "m")
                              or "page-content" in c.replace("C", "c").replace("P", "p"))


_COMMENT_BOXES = ("div", "list", "section", "details")
_PRUNE_BOXES = ("div", "section", "aside")

# (list name, index) -> (SHA-256 of the whitespace-normalised expression, tags, predicate[, selection])
STAND_INS: dict[tuple[str, int], tuple] = {
    ("BODY_XPATH", 0):
        ("8cab6e6e5b503a8d4fa84afa21a240c39d1cb16dbc423db4056ac83b22576bba", _CONTENT, _body_0, "first_child"),
    ("BODY_XPATH", 2):
        ("3ac5a80dac974e647f67a2f58fb3c87265f4af2cdc61af6253ca1c0e0a150f8b", _CONTENT, _body_2, "first"),
    ("BODY_XPATH", 3):
        ("a3befe41db4d28b9624e227ca67e81af7dc225944b61da55267ef1dbce354897", _CONTENT, _body_3, "first"),
    ("OVERALL_DISCARD_XPATH", 0):
        ("d9e4b7d7125b483849e2efb833cd65fbb45ee38cc81e3b4f09dc712495826a90", _BOX, _overall_discard_0),
    ("OVERALL_DISCARD_XPATH", 1):
        ("9abb7217d588fd5a828b3c711b322bce82f641fe3e495bfdbfac90231eca493f", None, _overall_discard_1),
    ("REMOVE_COMMENTS_XPATH", 0):
        ("853775ab53d61b2678b70a2f542bbb75e08be014c4164ef8e9ad66bb5487e52e", _COMMENT_BOXES, _remove_comments),
    ("REMOVE_COMMENTS_AND_LISTS_XPATH", 0):
        ("ec1083e558ae70c0be79fe7ff3f11f7fcac683c3bd7c6ba692c8feadb2c26a04", _COMMENT_BOXES + ("ol", "ul"),
         _remove_comments_and_lists),
    ("RAW_TREE_PRUNE_XPATH", 0):
        ("77023cff86242dc8bb0431d98c785ea1f268cfc94ef681253d7eacf0afa12efd", _PRUNE_BOXES, _raw_tree_prune_0),
    ("RAW_TREE_PRUNE_XPATH", 1):
        ("3c7afe92279543d5530365aa7b921c6e5b51243033e5622cae1dc85e08976f87", _PRUNE_BOXES, _raw_tree_prune_1),
    ("PRECISION_DISCARD_XPATH", 1):
        ("e73d179956bb857ee99043d836b0f57d6eeac41388c2a75639614fce48f0e4a7", _BOX, _precision_discard_1),
    ("TEASER_DISCARD_XPATH", 0):
        ("50f9c0568a62e759b3ae1dc7cbc20e1f08b0c5bfbb2d2938430755b4163abf50", _BOX, _teaser_discard),
    ("DISCARD_IMAGE_ELEMENTS", 0):
        ("271b5ef29bbc5bf0dd945568bfade7f126585f42e832f1612f712311c6e4c84c", _BOX, _discard_image),
}


def _html_class_lookup():
    """lxml.html's element classes (HtmlElement; FormElement for <form>, ...), chosen in C.

    lxml.html's own lookup is a Python method called for every element object lxml creates
    (1.9 million calls on 559 pages): the stand-ins walk whole trees and would pay it per element.
    The same classes for every lower-case tag name without a namespace, which is every element
    of a tree lxml's HTML parser builds."""
    from lxml import etree
    from lxml import html

    lookup = etree.ElementNamespaceClassLookup(etree.ElementDefaultClassLookup(
        element=html.HtmlElement, comment=html.HtmlComment, pi=html.HtmlProcessingInstruction,
        entity=html.HtmlEntity))
    lookup.get_namespace(None).update(html.HtmlElementClassLookup._default_element_classes)
    return lookup


_ORIGINAL_LOOKUP = None  # trafilatura's parser lookup before install()


def install() -> list[str]:
    """Put the stand-ins into trafilatura's expression lists (idempotent). Returns the names of
    the expressions replaced; an expression whose text differs from the one a stand-in was
    written for is left alone. trafilatura's HTML parser gets the C-level class lookup."""
    global _ORIGINAL_LOOKUP
    from trafilatura import utils, xpaths

    if _ORIGINAL_LOOKUP is None:
        from lxml.html import HtmlElementClassLookup

        _ORIGINAL_LOOKUP = HtmlElementClassLookup()
        utils.HTML_PARSER.set_element_class_lookup(_html_class_lookup())
    done = []
    for (name, index), (digest, tags, match, *select) in STAND_INS.items():
        exprs = getattr(xpaths, name, None)
        if not isinstance(exprs, list) or index >= len(exprs):
            continue
        current = exprs[index]
        if isinstance(current, _StandIn):
            done.append(f"{name}[{index}]")
            continue
        if _norm_hash(getattr(current, "path", "")) != digest:
            continue
        exprs[index] = _StandIn(current, tags, match, *select)
        done.append(f"{name}[{index}]")
    return done


def uninstall() -> None:
    """Restore trafilatura's own XPath objects and parser class lookup."""
    global _ORIGINAL_LOOKUP
    from trafilatura import utils, xpaths

    if _ORIGINAL_LOOKUP is not None:
        utils.HTML_PARSER.set_element_class_lookup(_ORIGINAL_LOOKUP)
        _ORIGINAL_LOOKUP = None

    for name, index in STAND_INS:
        exprs = getattr(xpaths, name, None)
        if isinstance(exprs, list) and index < len(exprs) and isinstance(exprs[index], _StandIn):
            exprs[index] = exprs[index].xpath


class Mismatch(AssertionError):
    """A stand-in selected other elements than its XPath (raised under `checking`)."""


@contextmanager
def checking() -> Iterator[dict[str, int]]:
    """While active, every installed stand-in also runs its XPath and raises Mismatch unless both
    select the same elements in the same order. Yields the number of calls checked per expression."""
    global _CHECKED
    previous, _CHECKED = _CHECKED, {}
    try:
        yield _CHECKED
    finally:
        _CHECKED = previous


_CHECKED: dict[str, int] | None = None  # calls compared per expression while `checking`
