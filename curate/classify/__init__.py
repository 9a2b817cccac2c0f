"""Classifier training (quality, domain) and pool building for the mixture planner.

- `train_quality`: fastText or MiniLM-embedding quality classifier, reference vs web (curate classify train-quality)
- `train_domain`: fastText topic classifier for the `domain_label` stage (curate classify train-domain)
- `pools`: documents -> pools (source x domain x quality bucket) and pools.json (curate pools)

The scoring stages live in processors/quality.py, processors/quality_embed.py and processors/domain.py.
"""
