"""Where webhooks may go: https to public addresses, checked when the URL is given and
again at every send against what the host resolves to (DNS rebinding included);
WEBHOOKS_ALLOW_INSECURE=true lets http and private addresses through."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import pytest

from shared.webhooks.urls import ResolveFailed, UrlRefused, check_url, resolve_target

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


class FakeResolver:
    """A resolver that answers `answers` and notes what it was asked."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Iterable[str]:
        self.asked.append((host, port))
        return self.answers


@pytest.mark.parametrize(("url", "normalised", "host", "port"), [
    ("https://example.com", "https://example.com/", "example.com", 443),
    ("HTTPS://Example.COM:443/hook?x=1", "https://example.com/hook?x=1", "example.com", 443),
    ("https://example.com:8443/a/b", "https://example.com:8443/a/b", "example.com", 8443),
    ("https://example.com./h", "https://example.com/h", "example.com", 443),
    ("https://bücher.example/h", "https://xn--bcher-kva.example/h", "xn--bcher-kva.example",
     443),
    (f"https://{PUBLIC_V4}/h", f"https://{PUBLIC_V4}/h", PUBLIC_V4, 443),
    (f"https://[{PUBLIC_V6}]:444/h", f"https://[{PUBLIC_V6}]:444/h", PUBLIC_V6, 444),
])
def test_good_urls_are_normalised(url: str, normalised: str, host: str, port: int) -> None:
    target = check_url(url, allow_insecure=False)
    assert (target.url, target.host, target.port) == (normalised, host, port)


@pytest.mark.parametrize("url", [
    "http://example.com/",  # plain http
    "ftp://example.com/", "file:///etc/passwd", "gopher://example.com/", "javascript:alert(1)",
    "//example.com/", "example.com", "https:///path", "https://",
    "https://user:pass@example.com/", "https://user@example.com/",
    "https://example.com@127.0.0.1/", "https://127.0.0.1#@example.com/",
    "https://example.com/#frag", "https://example.com:0/", "https://example.com:65536/",
    "https://example.com:+443/", "https://example.com: 443/", "https://example.com:-1/",
    "https://example.com:44a/", "https://exa mple.com/", "https://example.com/\n",
    "https://example.com\\@127.0.0.1/", "https://exa_mple.com/", "https://-bad.com/",
    "https://" + "a" * 64 + ".com/", "https://example.com/" + "a" * 2048,
    # loopback, private, link-local, reserved, shared, unspecified, multicast
    "https://127.0.0.1/", "https://127.9.9.9/", "https://10.0.0.1/", "https://172.16.0.1/",
    "https://192.168.1.1/", "https://169.254.169.254/latest/meta-data/", "https://100.64.0.1/",
    "https://0.0.0.0/", "https://240.0.0.1/", "https://255.255.255.255/", "https://224.0.0.1/",
    "https://192.0.2.1/", "https://198.18.0.1/",
    "https://localhost/", "https://LOCALHOST./", "https://api.localhost/",
    # IPv4 in the forms inet_aton reads besides the dotted quad
    "https://2130706433/", "https://0x7f000001/", "https://0x7f.0.0.1/", "https://017700000001/",
    "https://0177.0.0.1/", "https://127.1/", "https://127.0.1/", "https://00000000127.0.0.1/",
    "https://93.184.215.014/",  # a public quad, but 014 is octal to some
    # IPv6: loopback, unspecified, link-local, unique local, site-local, multicast, and
    # the forms that carry a private IPv4 address
    "https://[::1]/", "https://[::]/", "https://[fe80::1]/", "https://[fe80::1%25eth0]/",
    "https://[fc00::1]/", "https://[fd12:3456::1]/", "https://[fec0::1]/", "https://[ff02::1]/",
    "https://[::ffff:127.0.0.1]/", "https://[::ffff:7f00:1]/", "https://[::ffff:10.0.0.1]/",
    "https://[::ffff:169.254.169.254]/", "https://[64:ff9b::7f00:1]/",
    "https://[2002:7f00:1::]/", "https://[2002:a9fe:a9fe::1]/", "https://[::127.0.0.1]/",
    "https://[1::2::3]/", "https://[example.com]/", "https://[::1/",
    # IDN that map to loopback (full-width letters and digits, ideographic full stop)
    "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
    "https://127\u30020\u30020\u30021/",
    "https://xn--/", "https://☃.\u200b/",
])
def test_hostile_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, allow_insecure=False)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost:9000/", "http://[::1]:9000/",
    "https://10.1.2.3/", "http://[::ffff:127.0.0.1]/", "http://192.168.0.10/",
])
def test_insecure_allows_http_and_private_addresses(url: str) -> None:
    assert check_url(url, allow_insecure=True).url
    with pytest.raises(UrlRefused):
        check_url(url, allow_insecure=False)


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/", "https://0.0.0.0/", "http://[::]/", "http://224.0.0.1/",
    "https://user@127.0.0.1/", "http://2130706433/", "http://0x7f.1/",
])
def test_insecure_still_refuses_what_is_never_a_receiver(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, allow_insecure=True)


def test_a_name_resolves_to_the_address_to_connect_to() -> None:
    resolve = FakeResolver(PUBLIC_V4, PUBLIC_V6)
    found = resolve_target("https://hooks.example.com:8443/x", allow_insecure=False,
                           resolver=resolve)
    assert found.ip == ipaddress.ip_address(PUBLIC_V4)
    assert (found.host, found.port) == ("hooks.example.com", 8443)
    assert resolve.asked == [("hooks.example.com", 8443)]


def test_an_idn_host_is_resolved_in_ascii() -> None:
    resolve = FakeResolver(PUBLIC_V4)
    resolve_target("https://bücher.example/", allow_insecure=False, resolver=resolve)
    assert resolve.asked == [("xn--bcher-kva.example", 443)]


@pytest.mark.parametrize("answers", [
    ("127.0.0.1",), ("10.0.0.5",), ("169.254.169.254",), ("::1",), ("fe80::1%eth0",),
    ("::ffff:127.0.0.1",), ("::ffff:192.168.0.1",), ("64:ff9b::a00:1",), ("fd00::1",),
    ("0.0.0.0",), ("100.64.1.1",),
    (PUBLIC_V4, "127.0.0.1"),  # one private answer among public ones: refused
    ("127.0.0.1", PUBLIC_V4),
])
def test_a_name_that_resolves_to_a_private_address_is_refused(answers: tuple[str, ...]
                                                              ) -> None:
    with pytest.raises(UrlRefused):
        resolve_target("https://rebind.example.com/", allow_insecure=False,
                       resolver=FakeResolver(*answers))


def test_dns_rebinding_is_judged_on_the_address_connected_to() -> None:
    """The name answers a public address, then a private one: each send resolves once
    and connects to what it checked, so the second send is refused, never connected."""
    answers = iter([[PUBLIC_V4], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    first = resolve_target("https://rebind.example.com/", allow_insecure=False,
                           resolver=rebinding)
    assert str(first.ip) == PUBLIC_V4
    with pytest.raises(UrlRefused):
        resolve_target(first.target, allow_insecure=False, resolver=rebinding)


def test_insecure_lets_a_name_resolve_to_loopback() -> None:
    found = resolve_target("http://localhost:9000/", allow_insecure=True,
                           resolver=FakeResolver("127.0.0.1"))
    assert str(found.ip) == "127.0.0.1"


def test_a_literal_address_is_not_resolved() -> None:
    def never(host: str, port: int) -> list[str]:
        raise AssertionError("resolved")

    found = resolve_target(f"https://[{PUBLIC_V6}]/", allow_insecure=False, resolver=never)
    assert str(found.ip) == PUBLIC_V6


@pytest.mark.parametrize("answers", [(), ("not-an-address",)])
def test_a_name_without_a_usable_address_fails_to_resolve(answers: tuple[str, ...]) -> None:
    with pytest.raises(ResolveFailed):
        resolve_target("https://nowhere.example.com/", allow_insecure=False,
                       resolver=FakeResolver(*answers))


def test_a_refused_url_is_refused_before_resolving() -> None:
    def never(host: str, port: int) -> list[str]:
        raise AssertionError("resolved")

    with pytest.raises(UrlRefused):
        resolve_target("http://example.com/", allow_insecure=False, resolver=never)
