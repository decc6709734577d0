"""
A download's URL and the rules for renewing it, whatever moves the bytes.

A pre-signed URL expires.  `Renewal` says when the one in hand is still good, lets
one renewal serve every worker that found it stale (and its failure fail them all,
without a request each), and notices a clock ahead of the service's.  The lock
around a renewal and the lookup itself are the caller's (`_host.Job`).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import attrs

from ._url import check_download_url

if TYPE_CHECKING:
    from ._exceptions import ECRError, LayerRef
    from ._url import LayerUrl

#: A URL this close to its expiry is renewed before use, not after a 403.
EXPIRY_MARGIN = 5.0


@attrs.define
class Renewal:
    """One download's URL and the rules for renewing it, whatever the transport.

    The transport holds its own lock around `begin`, the lookup and `accept`, so that
    one renewal serves every worker that found the URL stale.
    """

    layer: LayerRef
    allow_http: bool
    url: LayerUrl | None = None
    #: Renewals begun; a worker that waited through one compares it with what it saw.
    refreshes: int = 0
    failure: ECRError | None = None
    stale_on_arrival: int = 0

    def current(self) -> LayerUrl | None:
        """The URL to use now, or None if it must be renewed first."""
        url = self.url
        # Once two URLs in a row looked expired the moment they came, this machine's
        # clock is ahead of the service's: URLs are then used until the host says
        # otherwise, since renewing before every request would cost an API call per
        # range and gain nothing.
        if url is not None and (
            self.stale_on_arrival >= 2 or not url.expired(margin=EXPIRY_MARGIN)
        ):
            return url
        return None

    def begin(self, seen: int) -> None:
        """Start a renewal, unless the one this worker waited on (*seen*) just failed:
        that failure is its own too, without a request of its own."""
        if self.refreshes != seen and self.failure is not None:
            raise copy.copy(self.failure)
        self.refreshes += 1

    def accept(self, fresh: LayerUrl) -> LayerUrl:
        """Take a renewed URL, once it passes the URL checks."""
        check_download_url(fresh.download_url, allow_http=self.allow_http, layer=self.layer)
        self.url, self.failure = fresh, None
        self.stale_on_arrival = (
            self.stale_on_arrival + 1 if fresh.expired(margin=EXPIRY_MARGIN) else 0
        )
        return fresh

    def use(self, url: LayerUrl) -> None:
        """Start from *url*, looked up beforehand (in a batch), once it passes the URL checks."""
        check_download_url(url.download_url, allow_http=self.allow_http, layer=self.layer)
        self.url = url

    def forget(self, url: LayerUrl) -> None:
        """Drop *url* (the download host said it expired), unless already renewed."""
        if self.url is url:
            self.url = None
