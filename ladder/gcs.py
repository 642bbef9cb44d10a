"""gs:// paths (data, tokenizers, run dirs): fail in one line, at once, when Cloud Storage cannot be reached.

Without credentials gcsfs falls back to anonymous requests and retries each failing one with backoff
before a bare traceback (measured with no network: 53 s for one manifest read, then an aiohttp traceback;
`ladder train --run-dir gs://...`: 68 s, tracebacks, then "cannot write"). So a gs:// path first asks
google-auth for credentials, the way gcsfs would find them (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth
application-default login`, the GCE/TPU VM metadata server; that probe is bounded by google-auth: 3 tries
of 3 s). An emulator (STORAGE_EMULATOR_HOST) needs none. Anonymous reads of public buckets are not
offered: any Google account's application-default credentials read them too.
"""

from __future__ import annotations

import functools
import os

from ladder.errors import LadderError


def is_gcs(path) -> bool:
    return str(path).startswith("gs://")


def require_access(path, field: str) -> None:
    """A LadderError naming `field` and `path` when `path` is gs:// and no credentials or emulator exist."""
    if not is_gcs(path) or os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    problem = _credentials_problem()
    if problem:
        raise LadderError(f"{field}: {path} is on Cloud Storage, but {problem}; run `gcloud auth application-default "
                          "login`, set GOOGLE_APPLICATION_CREDENTIALS to a key file, or run on a GCP VM (for an "
                          "emulator set STORAGE_EMULATOR_HOST)")


@functools.lru_cache(maxsize=1)
def _credentials_problem() -> str:
    """'' when google-auth finds credentials, else why not (once per process: the answer does not change)."""
    try:
        import google.auth
        import google.auth.exceptions
    except ImportError:
        return "google-auth is not installed (pip install gcsfs)"
    try:
        google.auth.default()
    except google.auth.exceptions.DefaultCredentialsError:
        return "no credentials were found"
    except google.auth.exceptions.GoogleAuthError as e:
        return f"its credentials failed to load ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return ""
