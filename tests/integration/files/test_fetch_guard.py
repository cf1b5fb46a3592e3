"""The SSRF guard of attachments by link, against real HTTP servers on 127.0.0.1.

The default policy refuses everything but public addresses, so these tests reach their
local servers in one of two ways, both injected, never by weakening the default:
- a resolver that says a public-looking name has a public address, plus a connector that
  carries connections to that address to the local server (the default policy at work);
- an `AddressPolicy` whose allow-list holds 127.0.0.0/8 (only tests build one).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from mailer_core.adapters.web_fetch import (
    AddressPolicy,
    Fetcher,
    FetchError,
    FetchRefused,
    FetchTimeout,
    FetchTooLarge,
)

from tests.support.link_servers import PUBLIC, LinkServer, Network, Route, link_server

LOOPBACK_ALLOWED = AddressPolicy(allow=(ipaddress.ip_network("127.0.0.0/8"),))
MB = 1024 * 1024


@pytest.fixture
def network() -> Network:
    return Network()


@pytest.fixture
def fetcher(network: Network) -> Fetcher:
    """The default address policy, with the test network's DNS and routes."""
    return Fetcher(resolve=network.resolve, connect=network.connect, timeout=5)


@pytest.fixture
def files() -> Iterator[LinkServer]:
    with link_server(
        {
            "/offer.pdf": Route(body=b"%PDF-1.7 offer", headers={"Content-Type": "application/pdf"}),
            "/secret": Route(body=b"internal"),
        }
    ) as server:
        yield server


# -------------------------------------------------------------------- addresses refused


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/offer.pdf",
        "http://127.1.2.3:{port}/offer.pdf",
        "http://[::1]:{port}/offer.pdf",
        "http://[::ffff:127.0.0.1]:{port}/offer.pdf",
        "http://0.0.0.0:{port}/offer.pdf",
        "http://2130706433:{port}/offer.pdf",  # 127.0.0.1 as one number
    ],
)
def test_a_loopback_link_is_refused_before_any_connection(
    url: str, files: LinkServer, network: Network
) -> None:
    fetcher = Fetcher(connect=network.connect, timeout=5)  # the system's resolver, the default policy

    with pytest.raises(FetchRefused) as refused:
        fetcher.fetch(url.format(port=files.port), max_bytes=MB)

    assert not refused.value.retryable
    assert network.connected == [] and files.requests == []


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("[fd00::1]", "private"),
        ("[fe80::1]", "link-local"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[64:ff9b::a9fe:a9fe]", "link-local"),  # NAT64 of 169.254.169.254
    ],
)
def test_private_link_local_and_other_non_public_addresses_are_refused(
    address: str, words: str, network: Network
) -> None:
    fetcher = Fetcher(resolve=network.resolve, connect=network.connect, timeout=5)

    with pytest.raises(FetchRefused) as refused:
        fetcher.fetch(f"http://{address}/latest/meta-data/", max_bytes=MB)

    assert words in str(refused.value)
    assert network.connected == []


def test_a_name_that_resolves_to_a_private_address_is_refused(fetcher: Fetcher, network: Network) -> None:
    network.names["intranet.example.com"] = ["10.1.2.3"]

    with pytest.raises(FetchRefused, match=r"private address \(10\.1\.2\.3\)"):
        fetcher.fetch("https://intranet.example.com/report.pdf", max_bytes=MB)

    assert network.connected == []


def test_a_name_with_one_private_answer_among_public_ones_is_refused(
    fetcher: Fetcher, network: Network
) -> None:
    network.names["mixed.example.com"] = [PUBLIC, "169.254.169.254"]

    with pytest.raises(FetchRefused, match="link-local"):
        fetcher.fetch("http://mixed.example.com/a.pdf", max_bytes=MB)

    assert network.connected == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example.com/a.pdf",
        "file:///etc/passwd",
        "gopher://x/",
        "http://user:pw@files.example.com/a",
    ],
)
def test_only_plain_http_and_https_links_are_fetched(url: str, fetcher: Fetcher, network: Network) -> None:
    with pytest.raises(FetchRefused):
        fetcher.fetch(url, max_bytes=MB)
    assert network.resolved == []


# -------------------------------------------------------------------- what is allowed


def test_a_public_address_is_fetched_from_the_address_that_was_checked(
    fetcher: Fetcher, network: Network, files: LinkServer
) -> None:
    base = network.publish("files.example.com", files)

    with fetcher.fetch(f"{base}/offer.pdf", max_bytes=MB) as fetched:
        assert fetched.read_bytes() == b"%PDF-1.7 offer"
        assert (fetched.filename, fetched.content_type, fetched.size) == ("offer.pdf", "application/pdf", 14)

    assert network.connected == [(PUBLIC, 80)]
    assert files.hosts == ["files.example.com"]
    assert not Path(fetched.path).exists()  # the temporary file is gone


def test_the_connection_is_pinned_to_the_checked_address_so_dns_rebinding_cannot_swap_it(
    fetcher: Fetcher, network: Network, files: LinkServer
) -> None:
    base = network.publish("rebind.example.com", files)
    answers = iter([[PUBLIC], ["127.0.0.1"]])  # first answer public, any later one loopback

    def rebinding(host: str, port: int) -> list[str]:
        network.resolved.append(host)
        return next(answers)

    fetcher.resolve = rebinding

    with fetcher.fetch(f"{base}/offer.pdf", max_bytes=MB) as fetched:
        assert fetched.size == 14

    assert network.resolved == ["rebind.example.com"]  # resolved once, then connected to that address
    assert network.connected == [(PUBLIC, 80)]


def test_an_allow_list_set_by_a_test_reaches_loopback_and_the_default_does_not(files: LinkServer) -> None:
    url = files.url("/offer.pdf")

    with Fetcher(policy=LOOPBACK_ALLOWED, timeout=5).fetch(url, max_bytes=MB) as fetched:
        assert fetched.read_bytes() == b"%PDF-1.7 offer"
    with pytest.raises(FetchRefused):
        Fetcher(timeout=5).fetch(url, max_bytes=MB)


def test_https_verifies_the_certificate_for_the_name_while_connecting_to_the_address(
    network: Network, tmp_path: Path
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("files.example.com").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with link_server({"/a.pdf": Route(body=b"tls")}, tls=context) as server:
        base = network.publish("files.example.com", server, port=443)
        network.names["other.example.com"] = [PUBLIC]
        fetcher = Fetcher(resolve=network.resolve, connect=network.connect, ca_file=str(ca_file), timeout=5)

        with fetcher.fetch(f"{base}/a.pdf", max_bytes=MB) as fetched:
            assert fetched.read_bytes() == b"tls"
        with pytest.raises(FetchError, match="certificate") as wrong_name:
            fetcher.fetch("https://other.example.com/a.pdf", max_bytes=MB)

    assert not wrong_name.value.retryable


# -------------------------------------------------------------------- redirects


def test_a_redirect_from_an_allowed_server_to_a_private_address_is_refused(
    fetcher: Fetcher, network: Network
) -> None:
    with link_server({"/secret": Route(body=b"internal")}) as internal:
        routes = {
            "/to-loopback": Route(location=internal.url("/secret")),
            "/to-metadata": Route(location="http://169.254.169.254/latest/meta-data/iam/"),
            "/to-private-name": Route(location="http://intranet.example.com/secret"),
        }
        network.names["intranet.example.com"] = ["10.0.0.8"]
        with link_server(routes) as public:
            base = network.publish("files.example.com", public)
            for path in routes:
                with pytest.raises(FetchRefused, match="not allowed"):
                    fetcher.fetch(f"{base}{path}", max_bytes=MB)

        assert internal.requests == []  # nothing ever reached the internal server
        assert network.connected == [(PUBLIC, 80)] * 3


def test_redirects_are_followed_checked_at_each_hop_and_at_most_five(
    fetcher: Fetcher, network: Network
) -> None:
    routes = {f"/hop{i}": Route(location=f"/hop{i + 1}") for i in range(7)}
    routes["/hop3"] = Route(body=b"after three hops")
    with link_server(routes) as server:
        base = network.publish("files.example.com", server)

        with fetcher.fetch(f"{base}/hop0", max_bytes=MB) as fetched:
            assert fetched.read_bytes() == b"after three hops"
        routes["/hop3"] = Route(location="/hop4")
        routes["/hop6"] = Route(location="/hop7")
        with pytest.raises(FetchError, match="more than 5 times") as too_many:
            fetcher.fetch(f"{base}/hop0", max_bytes=MB)

    assert not too_many.value.retryable
    assert server.requests[:4] == ["/hop0", "/hop1", "/hop2", "/hop3"]
    assert len(server.requests) == 4 + 6  # the second fetch stopped after six answers


# -------------------------------------------------------------------- size and time


def test_a_declared_length_over_the_cap_is_refused_without_reading(
    fetcher: Fetcher, network: Network
) -> None:
    with link_server({"/big.zip": Route(body=b"x" * 10, declared_length=200 * MB)}) as server:
        base = network.publish("files.example.com", server)
        with pytest.raises(FetchTooLarge, match="1048576 bytes"):
            fetcher.fetch(f"{base}/big.zip", max_bytes=MB)


def test_the_cap_is_enforced_while_streaming_a_body_without_length(
    fetcher: Fetcher, network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with link_server({"/endless": Route(endless=True)}) as server:
        base = network.publish("files.example.com", server)
        started = time.monotonic()
        with pytest.raises(FetchTooLarge) as too_large:
            fetcher.fetch(f"{base}/endless", max_bytes=2 * MB)
        elapsed = time.monotonic() - started

    assert not too_large.value.retryable
    assert elapsed < 3
    assert list(tmp_path.iterdir()) == []  # the partial download was removed


def test_a_server_that_trickles_bytes_times_out_on_the_total_deadline(
    fetcher: Fetcher, network: Network
) -> None:
    with link_server({"/slow": Route(trickle=0.05)}) as server:
        base = network.publish("files.example.com", server)
        started = time.monotonic()
        with pytest.raises(FetchTimeout) as timeout:
            fetcher.fetch(f"{base}/slow", max_bytes=MB, timeout=0.6)
        elapsed = time.monotonic() - started

    assert timeout.value.retryable
    assert 0.5 < elapsed < 2.5


def test_a_server_that_never_answers_times_out(fetcher: Fetcher, network: Network) -> None:
    with link_server({"/hang": Route(hang=True)}) as server:
        base = network.publish("files.example.com", server)
        started = time.monotonic()
        with pytest.raises(FetchTimeout):
            fetcher.fetch(f"{base}/hang", max_bytes=MB, timeout=0.5)
        assert time.monotonic() - started < 2.5


# -------------------------------------------------------------------- answers


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (403, False), (429, True), (503, True)])
def test_error_answers_say_whether_a_later_try_may_work(
    status: int, retryable: bool, fetcher: Fetcher, network: Network
) -> None:
    with link_server({"/a.pdf": Route(status=status, body=b"no")}) as server:
        base = network.publish("files.example.com", server)
        with pytest.raises(FetchError, match=str(status)) as failed:
            fetcher.fetch(f"{base}/a.pdf", max_bytes=MB)
    assert failed.value.retryable is retryable and failed.value.status == status


def test_an_unknown_host_is_not_retried_and_a_refused_connection_is(
    fetcher: Fetcher, network: Network
) -> None:
    with pytest.raises(FetchError, match="cannot be resolved") as unknown:
        fetcher.fetch("http://no-such-host.example.com/a.pdf", max_bytes=MB)
    with link_server({}) as server:
        network.publish("down.example.com", server)
    # the server is gone: its port refuses connections now
    with pytest.raises(FetchError) as refused:
        fetcher.fetch("http://down.example.com/a.pdf", max_bytes=MB)

    assert not unknown.value.retryable
    assert refused.value.retryable and not isinstance(refused.value, FetchRefused)


def test_the_file_name_comes_from_content_disposition_or_the_path(fetcher: Fetcher, network: Network) -> None:
    routes = {
        "/dl": Route(
            body=b"1",
            headers={
                "Content-Disposition": "attachment; filename*=UTF-8''"
                + "%D0%A1%D1%87%D1%91%D1%82%20%E2%84%967.pdf"
            },
        ),
        "/docs/%D0%94%D0%BE%D0%B3%D0%BE%D0%B2%D0%BE%D1%80.docx": Route(body=b"2"),
    }
    with link_server(routes) as server:
        base = network.publish("files.example.com", server)
        with fetcher.fetch(f"{base}/dl", max_bytes=MB) as by_header:
            assert by_header.filename == "Счёт №7.pdf"
        with fetcher.fetch(f"{base}/docs/Договор.docx", max_bytes=MB) as by_path:
            assert by_path.filename == "Договор.docx"

    assert server.requests[1] == "/docs/%D0%94%D0%BE%D0%B3%D0%BE%D0%B2%D0%BE%D1%80.docx"


def test_temporary_files_do_not_outlive_a_failure(
    fetcher: Fetcher, network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with link_server({"/slow": Route(trickle=0.02)}) as server:
        base = network.publish("files.example.com", server)
        with pytest.raises(FetchTimeout):
            fetcher.fetch(f"{base}/slow", max_bytes=MB, timeout=0.3)
    assert os.listdir(tmp_path) == []
