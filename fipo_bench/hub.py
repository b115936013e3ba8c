"""Is the Hugging Face Hub usable right now? Checked before a model or dataset loads from it.

huggingface_hub retries an unreachable Hub for about a minute and then fails with a long traceback;
one request with a short timeout says the same at once, and the error can say what to do. The
libraries' own settings are respected: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) means "use the local
cache only", HF_ENDPOINT a mirror, and the usual proxy variables apply to the request.
"""

from __future__ import annotations

import functools
import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 5.0


@functools.cache
def unreachable_reason(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why `endpoint` cannot be reached (DNS, refused, timeout), or None when it answers at all:
    any HTTP status, an error page included, means the Hub is there."""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as e:
        return str(getattr(e, "reason", e))
    return None


def check_hub_reachable(what: str, offline_hint: str) -> None:
    """Raise ConnectionError naming `what` (e.g. "model 'org/name'") when the Hub does not answer. In
    offline mode the libraries read their cache only and never ask the Hub, so neither does this."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return
    reason = unreachable_reason(constants.ENDPOINT)
    if reason is not None:
        raise ConnectionError(f"{what} comes from the Hugging Face Hub, which does not answer at "
                              f"{constants.ENDPOINT} ({reason}); {offline_hint}")


def check_hub_model(repo_id: str) -> None:
    """A Hub model id loads now: from the local cache in offline mode, else from a Hub that answers."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    if constants.is_offline_mode():
        if not cached:
            raise FileNotFoundError(
                f"model {repo_id!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                f"HF_HUB_OFFLINE is set: pass a local model directory, or download it where the Hub is "
                f"reachable (hf download {repo_id})")
        return
    hint = ("it is in the Hugging Face cache: set HF_HUB_OFFLINE=1 to use that copy" if cached
            else "pass a local model directory instead")
    check_hub_reachable(f"model {repo_id!r}", hint)
