"""Mix pools per the plan, tokenise, and write globally shuffled token shards (Parquet) + manifest.

Entry points: `run_shard(ShardConfig(...))` (engine.py), `verify_shards(folder)` (verify.py), the
`curate shard` command (cli.py) and the loaders (loaders.py). Importing this package does not
import Ray; the engine does when it runs.
"""
from .config import ShardConfig, load_shard_config

__all__ = ["ShardConfig", "load_shard_config"]
