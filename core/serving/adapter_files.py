"""What identifies a LoRA adapter folder's weights (for caches keyed by adapter)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def adapter_fingerprint(folder: Path) -> str:
    """A short hash of the adapter's weights, so a retrained adapter never hits a stale cache."""
    digest = hashlib.sha1()
    for path in sorted(folder.glob("adapter_model.*")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
