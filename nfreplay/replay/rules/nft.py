"""nftables front end: `nft list ruleset` text and `nft -j list ruleset` JSON -> model.Ruleset.

Both forms go through one builder and one expression lowering (nft_json.Builder, nft_expr), so the
same ruleset in either form gives the same model. See docs/nftables.md.
"""

from __future__ import annotations

import hashlib

from .model import Ruleset
from .nft_json import parse_nft_json as _parse_json
from .nft_text import parse_text as _parse_text

__all__ = ["parse_nft_text", "parse_nft_json"]


def parse_nft_text(text: str, source: str = "<string>") -> Ruleset:
    """Parse nft ruleset text (`nft list ruleset`, `nft -f` files: define, include, add/insert rule...).

    Raises RulesetSyntaxError (file, line, column, token) on bad input; unmodelled constructs become
    model.Unsupported in their rule and are listed in Ruleset.unsupported.
    """
    return _parse_text(text, source, hashlib.sha256(text.encode()).hexdigest())


def parse_nft_json(text: str, source: str = "<string>") -> Ruleset:
    """Parse libnftables JSON (`nft -j list ruleset`). Rule text is rendered back into nft syntax."""
    return _parse_json(text, source, hashlib.sha256(text.encode()).hexdigest())
