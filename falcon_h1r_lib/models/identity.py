"""What a model *is*, for cache keys: stored traces, filter rollouts and results are reused only for the very
weights that produced them, never for whatever now sits at the same path (a retrained checkpoint)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from falcon_h1r_lib.paths import resolve_path

WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
FULL_HASH_MAX_BYTES = 256 * 1024**2  # larger shards (7B checkpoints) are identified by size and mtime instead


def weights_fingerprint(model: str | Path) -> str:
    """sha256 over a local checkpoint's config and weight files (content for small files, size + mtime for large
    shards); a Hub id or a missing path is returned as is (pin Hub models by revision)."""
    path = resolve_path(model)
    if not path.is_dir():
        return str(model)
    files = sorted(f for pattern in WEIGHT_PATTERNS for f in path.glob(pattern))
    if not files:
        raise FileNotFoundError(f"{path}: no weight files ({', '.join(WEIGHT_PATTERNS)}) to fingerprint")
    h = hashlib.sha256()
    for f in [path / "config.json", *files]:
        if not f.exists():
            continue
        h.update(f.name.encode())
        stat = f.stat()
        if stat.st_size <= FULL_HASH_MAX_BYTES:
            h.update(f.read_bytes())
        else:
            h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


__all__ = ["weights_fingerprint"]
