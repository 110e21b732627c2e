"""The client's address and scheme: forwarding headers count only from a trusted proxy."""

from __future__ import annotations

from ffe.api.clients import TrustedProxies


def _scope(peer: str, *lines: tuple[str, str], **headers: str) -> dict[str, object]:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(k.lower().encode(), v.encode()) for k, v in lines]
    return {"type": "http", "scheme": "http", "client": (peer, 1234), "headers": raw}


def test_client_when_no_proxy_is_trusted_then_the_peer_whatever_it_claims():
    proxies = TrustedProxies()

    assert proxies.client(_scope("192.0.2.1", x_forwarded_for="198.51.100.7")) == "192.0.2.1"


def test_client_when_peer_is_a_trusted_proxy_then_last_untrusted_hop():
    proxies = TrustedProxies(["10.0.0.0/8"])
    scope = _scope("10.0.0.2", x_forwarded_for="1.2.3.4, 198.51.100.7, 10.0.0.9")

    # 1.2.3.4 was written by the client itself: only the hops our proxies added are believed
    assert proxies.client(scope) == "198.51.100.7"


def test_client_when_trusted_proxy_sends_no_forwarded_for_then_the_proxy():
    assert TrustedProxies(["10.0.0.2"]).client(_scope("10.0.0.2")) == "10.0.0.2"


def test_https_when_forwarded_proto_from_a_stranger_then_not_believed():
    proxies = TrustedProxies(["10.0.0.2"])

    assert not proxies.https(_scope("192.0.2.1", x_forwarded_proto="https"))
    assert proxies.https(_scope("10.0.0.2", x_forwarded_proto="https"))


def test_client_when_the_proxy_adds_a_second_forwarded_for_line_then_its_line_wins():
    proxies = TrustedProxies(["10.0.0.2"])
    scope = _scope(
        "10.0.0.2",
        ("X-Forwarded-For", "1.2.3.4"),  # the client's own, spoofed
        ("X-Forwarded-For", "198.51.100.7"),  # the one the proxy added (HAProxy add-header)
    )

    assert proxies.client(scope) == "198.51.100.7"


def test_https_when_the_proxy_adds_a_second_forwarded_proto_line_then_its_line_wins():
    proxies = TrustedProxies(["10.0.0.2"])
    lines = (("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http"))

    assert not proxies.https(_scope("10.0.0.2", *lines))
