"""The `domain_label` stage: a topic/domain label per document from URL rules and a fastText model.

Adds three columns:

- `domain_label` (string): the label; never null (documents nothing labels get `default_label`);
- `domain_label_source` (string): `rule`, `model` or `default`, i.e. which source decided;
- `domain_label_score` (float32): the model's probability when the model decided, 1.0 for a rule,
  null for the default.

Two sources, usable alone or together:

1. **Rules** (`rules_path`): a YAML or TSV file mapping host suffixes or URL regular expressions to
   labels. YAML:

       rules:
         - label: reference
           hosts: [wikipedia.org, britannica.com]   # host or any parent domain, on label boundaries
         - label: government
           hosts: [gov, gov.uk]                     # a TLD or public suffix works too
         - label: news
           url_regex: ['^https?://[^/]+/news/']     # Python regex, searched in the full URL

   TSV: one rule per line, `host<TAB>wikipedia.org<TAB>reference` or
   `url_regex<TAB>/news/<TAB>news`; lines starting with `#` are comments. The first rule (in file order) that
   matches wins. The host is the `domain` column when present (the extract stage's lowercased host
   without `www.`), else the URL's host. Host rules are looked up by suffix in a dict, so
   thousands of them cost the same as one.
2. **Model** (`model_path`): a fastText classifier trained by `curate classify train-domain`
   (labels `__label__<name>`, multi-label one-vs-all or softmax); the top label is used when its
   probability is at least `threshold`.

`order: rules_first` (default) lets a matching rule override the model (a curated host list is
usually more precise than a text classifier); `model_first` uses the model whenever it clears the
threshold and the rules only otherwise.

The label set: `label_map` renames model or rule labels (e.g. merge fine topics into coarse
domains: `{physics: science, chemistry: science}`); `labels`, when given, is the closed set of
output labels: a rule whose (mapped) label is outside it is an error at `check()`, and a model
prediction outside it counts as no prediction. Labels are normalised to lowercase with spaces as
underscores (`food and drink` -> `food_and_drink`), as the trainer writes them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal, Sequence

import numpy as np
import pyarrow as pa
from pydantic import ConfigDict, Field, model_validator

from processors.uris import domain_of
from processors.base import Mapper, Params, ProcessorError
from processors.textstats import texts_of


def normalize_label(label: str) -> str:
    return "_".join(str(label).strip().lower().split())


class UrlRules:
    """Host-suffix and URL-regex rules; `match(host, url)` gives the first matching rule's label."""

    def __init__(self, rules: list[tuple[str, str, str]]) -> None:
        # rules: (kind, pattern, label) in file order; kind is "host" or "url_regex"
        self.hosts: dict[str, tuple[int, str]] = {}
        self.regexes: list[tuple[int, re.Pattern, str]] = []
        for i, (kind, pattern, label) in enumerate(rules):
            if kind == "host":
                key = pattern.strip().lower().lstrip(".")
                if key.startswith("www."):
                    key = key[4:]
                if not key:
                    raise ProcessorError(f"domain_label: rule {i + 1}: empty host")
                self.hosts.setdefault(key, (i, label))  # an earlier rule for the same host wins
            elif kind == "url_regex":
                try:
                    self.regexes.append((i, re.compile(pattern), label))
                except re.error as e:
                    raise ProcessorError(f"domain_label: rule {i + 1}: bad regex {pattern!r}: {e}") from e
            else:
                raise ProcessorError(f"domain_label: rule {i + 1}: unknown kind {kind!r} (host or url_regex)")
        self.labels = {label for _, _, label in rules}

    def __len__(self) -> int:
        return len(self.hosts) + len(self.regexes)

    def match(self, host: str | None, url: str | None) -> str | None:
        best: tuple[int, str] | None = None
        if host and self.hosts:
            parts = host.split(".")
            for k in range(len(parts)):
                hit = self.hosts.get(".".join(parts[k:]))
                if hit is not None and (best is None or hit[0] < best[0]):
                    best = hit
        if url:
            for i, rx, label in self.regexes:
                if best is not None and i > best[0]:
                    break
                if rx.search(url):
                    return label
        return best[1] if best else None


def load_rules(path: str | Path, label_map: dict[str, str] | None = None) -> UrlRules:
    """Read a YAML or TSV rules file (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProcessorError(f"domain_label: rules_path {str(path)!r} does not exist")
    label_map = label_map or {}
    rules: list[tuple[str, str, str]] = []

    def add(kind: str, pattern: str, label: str) -> None:
        lab = normalize_label(label)
        rules.append((kind, pattern, label_map.get(lab, lab)))

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ProcessorError(f"domain_label: {str(path)!r} is not valid YAML: {e}") from e
        items = data.get("rules") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ProcessorError(f"domain_label: {str(path)!r}: expected a `rules:` list")
        for n, item in enumerate(items, 1):
            if not isinstance(item, dict) or "label" not in item:
                raise ProcessorError(f"domain_label: {str(path)!r} rule {n}: needs `label` and `hosts` or `url_regex`")
            unknown = set(item) - {"label", "hosts", "url_regex"}
            if unknown or not (item.get("hosts") or item.get("url_regex")):
                raise ProcessorError(f"domain_label: {str(path)!r} rule {n}: keys are label, hosts, url_regex "
                                     f"(got {sorted(item)})")
            for key, kind in (("hosts", "host"), ("url_regex", "url_regex")):
                values = item.get(key) or []
                for v in [values] if isinstance(values, str) else values:
                    add(kind, str(v), str(item["label"]))
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise ProcessorError(f"domain_label: {str(path)!r} line {n}: expected KIND<TAB>PATTERN<TAB>LABEL")
            add(fields[0].strip(), fields[1].strip(), fields[2].strip())
    if not rules:
        raise ProcessorError(f"domain_label: {str(path)!r} holds no rules")
    return UrlRules(rules)


class DomainLabelParams(Params):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    rules_path: str | None = Field(None, description="YAML/TSV file of host-suffix and URL-regex rules")
    model_path: str | None = Field(None, description="fastText topic model from `curate classify train-domain`")
    labels: list[str] = Field(default_factory=list, description="the closed set of output labels (empty: any)")
    label_map: dict[str, str] = Field(default_factory=dict, description="rename labels (fine -> coarse)")
    threshold: float = Field(0.0, ge=0, le=1, description="lowest model probability to use its top label")
    default_label: str = Field("other", description="label when no rule matches and the model abstains")
    order: Literal["rules_first", "model_first"] = "rules_first"
    text_chars: int | None = Field(None, ge=1, description="classify only the first N characters")

    @model_validator(mode="after")
    def _some_source(self) -> "DomainLabelParams":
        if not self.rules_path and not self.model_path:
            raise ValueError("domain_label needs rules_path, model_path or both")
        return self


class DomainLabel(Mapper):
    """Labels each document's domain/topic from URL rules and/or a fastText model."""

    kind: ClassVar[str] = "domain_label"
    Params: ClassVar[type[Params]] = DomainLabelParams
    requires: ClassVar[tuple[str, ...]] = ("text", "url")
    provides: ClassVar[tuple[str, ...]] = ("domain_label", "domain_label_source", "domain_label_score")

    def __init__(self, params: DomainLabelParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        self._map = {normalize_label(k): normalize_label(v) for k, v in p.label_map.items()}
        self._labels = frozenset(normalize_label(x) for x in p.labels)
        self._default = normalize_label(p.default_label)
        self._rules: UrlRules | None = None
        self._model = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    def setup(self) -> None:
        p = self.params
        if p.rules_path and self._rules is None:
            rules = load_rules(p.rules_path, self._map)
            if self._labels and not rules.labels <= self._labels:
                raise ProcessorError(f"domain_label: rules use labels {sorted(rules.labels - self._labels)} "
                                     f"outside `labels` {sorted(self._labels)}")
            self._rules = rules
        if p.model_path and self._model is None:
            from processors.quality import load_fasttext

            path = Path(p.model_path).expanduser()
            if not path.is_file():
                raise ProcessorError(f"domain_label: model_path {str(path)!r} does not exist; train one "
                                     "with `curate classify train-domain`")
            self._model = load_fasttext(path, "domain_label")
            if self._labels:
                known = {self._map.get(lab, lab) for lab in
                         (normalize_label(x.removeprefix("__label__")) for x in self._model.get_labels())}
                if not known & self._labels:
                    raise ProcessorError(f"domain_label: no label of {str(path)!r} ({sorted(known)[:10]}...) "
                                         f"is in `labels` {sorted(self._labels)}")

    def predict_model(self, texts: Sequence[str]) -> tuple[list[str | None], np.ndarray]:
        """Top model label per text (after label_map; None if outside `labels` or below threshold)."""
        from processors.quality import fasttext_label_probs, fasttext_text

        labels_out: list[str | None] = [None] * len(texts)
        scores = np.zeros(len(texts), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t and not t.isspace()]
        if not todo or self._model is None:
            return labels_out, scores
        labels, probs = fasttext_label_probs(self._model, [fasttext_text(texts[i], self.params.text_chars)
                                                           for i in todo])
        mapped = [self._map.get(normalize_label(lab), normalize_label(lab)) for lab in labels]
        uniq = sorted(set(mapped))
        if len(uniq) != len(mapped):  # several model labels map to one output label: add them up
            merged = np.zeros((len(todo), len(uniq)), dtype=np.float32)
            for j, m in enumerate(mapped):
                merged[:, uniq.index(m)] += probs[:, j]
            mapped, probs = uniq, merged
        if self._labels:  # the closed label set: labels outside it never win
            allowed = np.array([m in self._labels for m in mapped])
            probs = np.where(allowed[None, :], probs, -1.0)
        best = probs.argmax(axis=1)
        for row, i in enumerate(todo):
            s = float(probs[row, best[row]])
            if s >= 0 and s >= self.params.threshold:
                labels_out[i] = mapped[best[row]]
                scores[i] = min(s, 1.0)
        return labels_out, scores

    def map(self, batch: pa.Table) -> pa.Table:
        self.setup()
        n = batch.num_rows
        urls = batch.column("url").to_pylist()
        hosts = (batch.column("domain").to_pylist() if "domain" in batch.column_names else [None] * n)
        hosts = [h or domain_of(u) for h, u in zip(hosts, urls)]
        rule_labels = ([self._rules.match(h, u) for h, u in zip(hosts, urls)]
                       if self._rules is not None else [None] * n)
        if self._model is not None:
            model_labels, model_scores = self.predict_model(texts_of(batch))
        else:
            model_labels, model_scores = [None] * n, np.zeros(n, dtype=np.float32)
        out_label, out_source = [], []
        out_score = np.full(n, np.nan, dtype=np.float32)
        for i in range(n):
            r, m = rule_labels[i], model_labels[i]
            if r is not None and (self.params.order == "rules_first" or m is None):
                out_label.append(r), out_source.append("rule")
                out_score[i] = 1.0
            elif m is not None:
                out_label.append(m), out_source.append("model")
                out_score[i] = model_scores[i]
            else:
                out_label.append(self._default), out_source.append("default")
        for name, values in (("domain_label", pa.array(out_label, type=pa.string())),
                             ("domain_label_source", pa.array(out_source, type=pa.string())),
                             ("domain_label_score", pa.array(out_score, type=pa.float32(),
                                                             mask=np.isnan(out_score)))):
            if name in batch.column_names:
                batch = batch.set_column(batch.schema.get_field_index(name), name, values)
            else:
                batch = batch.append_column(name, values)
        return batch
