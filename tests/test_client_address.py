"""Who the client is behind proxies: the pure rule of ingress.client_address."""

import pytest

from ingress.client_address import client_address, forwarded_for, parse_hop
from services.settings import Settings, proxy_networks

PROXIES = proxy_networks("10.0.0.0/8, 2001:db8:ffff::/48")


def test_an_untrusted_peer_is_the_client_whatever_it_forwards():
    assert client_address("203.0.113.5", "198.51.100.1", PROXIES) == "203.0.113.5"
    assert client_address("203.0.113.5", "198.51.100.1", ()) == "203.0.113.5"
    assert client_address("10.1.2.3", "198.51.100.1", ()) == "10.1.2.3", "nothing trusted by default"


def test_a_trusted_peer_hands_over_the_right_most_untrusted_hop():
    assert client_address("10.0.0.2", "198.51.100.7", PROXIES) == "198.51.100.7"
    chain = "1.2.3.4, 198.51.100.7, 10.0.0.9"  # spoofed, real client, our inner proxy
    assert client_address("10.0.0.2", chain, PROXIES) == "198.51.100.7"
    assert client_address("10.0.0.2", None, PROXIES) == "10.0.0.2", "no header: the proxy itself"
    assert client_address("10.0.0.2", " , ", PROXIES) == "10.0.0.2"


def test_when_every_hop_is_a_proxy_the_left_most_is_the_client():
    assert client_address("10.0.0.2", "10.9.9.9, 10.0.0.7", PROXIES) == "10.9.9.9"


def test_garbage_stops_the_walk_at_the_nearest_trusted_hop():
    assert client_address("10.0.0.2", "198.51.100.7, nonsense", PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", "=cmd, 10.0.0.7", PROXIES) == "10.0.0.7"
    assert client_address("10.0.0.2", "unknown", PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", "999.1.1.1", PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", "198.51.100.7,,", PROXIES) == "198.51.100.7"
    assert client_address("not-an-address", "198.51.100.7", PROXIES) == "not-an-address"
    assert client_address(None, "198.51.100.7", PROXIES) is None


def test_ipv6_ports_brackets_and_mapped_addresses():
    assert client_address("2001:db8:ffff::1", "2001:db8:1::5", PROXIES) == "2001:db8:1::5"
    assert client_address("2001:db8:ffff::1", "[2001:db8:1::5]:443", PROXIES) == "2001:db8:1::5"
    assert client_address("::ffff:10.0.0.2", "198.51.100.7:5555", PROXIES) == "198.51.100.7"
    assert client_address("2001:db8:1::5", "198.51.100.7", PROXIES) == "2001:db8:1::5"
    assert parse_hop("[::1]") is not None and parse_hop("[::1") is not None
    assert parse_hop("::ffff:198.51.100.7") == parse_hop("198.51.100.7")
    assert parse_hop("") is None and parse_hop("[]") is None and parse_hop("1.2.3") is None


def test_every_forwarded_for_line_counts_in_order():
    headers = [(b"X-Forwarded-For", b"1.1.1.1"), (b"host", b"x"), (b"x-forwarded-for", b"10.0.0.3")]
    assert forwarded_for(headers) == "1.1.1.1,10.0.0.3"
    assert forwarded_for([(b"host", b"x")]) is None


def test_a_mistyped_trusted_proxies_setting_refuses_to_start():
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        Settings(trusted_proxies="10.0.0.0/33")
    assert Settings(trusted_proxies=" 127.0.0.1/32 ,::1 ").trusted_proxy_networks == proxy_networks(
        "127.0.0.1/32,::1/128"
    )
