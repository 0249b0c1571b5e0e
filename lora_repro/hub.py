"""Whether the Hugging Face hub can be reached, asked once per process before the first hub lookup.

Without network, huggingface_hub and datasets retry every lookup for half a minute or more before they
fail. One quick connection test instead: when the hub cannot be reached, the process goes offline the way
HF_HUB_OFFLINE=1 would take it, so what is cached still loads and what is not fails at once.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from urllib.parse import urlparse

__all__ = ["ensure_reachable_or_offline"]

CONNECT_SECONDS = 3.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
log = logging.getLogger(__name__)


@functools.cache
def ensure_reachable_or_offline() -> bool:
    """True if the hub may be used; else switch huggingface_hub and datasets to offline mode, and False."""
    import datasets
    import huggingface_hub.constants as hub

    if hub.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True  # only the proxy can tell; let the libraries ask it
    endpoint = urlparse(hub.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=CONNECT_SECONDS).close()
        return True
    except OSError as err:
        log.info("the Hugging Face hub (%s) cannot be reached (%s): working offline", hub.ENDPOINT, err)
        hub.HF_HUB_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
        return False
