"""Loopback HTTP fakes of providers, for tests (standard library servers on 127.0.0.1).

FakeApify: Apify API v2 (start runs, poll, abort, dataset items) with test-registered actors.
FakeJsonApi: a generic JSON API that echoes each request, or answers what route() registered.
Both: start()/stop() or `with`, base_url, a call log (calls, count()), scripted faults
(fail_next, hang_next, slow_next, garbage_next, disconnect_next) and a global `delay`.
"""

from tests.fakes.apify import ApifyRun, FakeApify
from tests.fakes.jsonapi import Call, FakeJsonApi, FakeServer, Reply, http_date

__all__ = ["ApifyRun", "Call", "FakeApify", "FakeJsonApi", "FakeServer", "Reply", "http_date"]
