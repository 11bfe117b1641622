"""The HTTP transport that bounds every request ``datasets`` makes to the Hub (see
:func:`cpt_tasks.data.hfdatasets.bounded_hub_requests`): its own module, so that importing the readers does not
import ``requests`` (30 ms of a conversion's start) unless a Hub dataset is read."""

from __future__ import annotations

from urllib.parse import urlparse

from requests.adapters import HTTPAdapter

from cpt_tasks.storage.network import RETRY_STATUSES, Network, call_with_retries


class BoundedAdapter(HTTPAdapter):
    """The transport of every request in a session from :func:`bounded_hub_requests`: the configured
    ``(connect, read)`` timeouts instead of the caller's, the body of a non-streamed response read within the same
    attempt, and failed attempts (timeouts, refused/reset connections, 5xx/429) retried with backoff. Spent
    retries raise TransientError ``<host>: <label>: <METHOD> <path>: <reason> (<n> attempts)``."""

    def __init__(self, network: Network, label: str) -> None:
        super().__init__()
        self.network, self.label = network, label

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        import requests

        from cpt_tasks.data.hub import is_transient

        url = urlparse(request.url)

        def attempt():
            response = super(BoundedAdapter, self).send(request, stream=stream, timeout=self.network.timeouts,
                                                        verify=verify, cert=cert, proxies=proxies)
            if response.status_code in RETRY_STATUSES or response.status_code >= 500:
                response.close()
                raise requests.HTTPError(f"HTTP {response.status_code}", response=response)
            if not stream:
                response.content  # noqa: B018 -- a body that stalls fails this attempt, not the caller's read
            return response

        return call_with_retries(attempt, self.network, url.netloc, f"{self.label}: {request.method} {url.path}",
                                 is_transient)
