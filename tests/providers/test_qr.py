"""A QR per attempt: bound to amount and payment id, readable back from its PNG."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import png
import pytest

from fynlo_sync.domains.payments.providers.qr import pay_link, payment_qr, verify_link
from fynlo_sync.errors import CallerError

KEY = "pay-link-key-0123456789abcdef0123"


def link(attempt: str = "att-1", amount: int = 2150) -> str:
    return pay_link(
        "https://pos.example/",
        KEY,
        tenant="cafe",
        order_id="o-7",
        attempt_id=attempt,
        amount=amount,
        currency="GBP",
    )


def test_the_link_is_bound_to_tenant_attempt_amount_and_currency() -> None:
    url = link()
    assert url.startswith("https://pos.example/pay/cafe/o-7/att-1?amount=2150&currency=GBP&sig=")
    sig = url.rsplit("sig=", 1)[1]
    ok = {
        "tenant": "cafe",
        "order_id": "o-7",
        "attempt_id": "att-1",
        "amount": 2150,
        "currency": "GBP",
    }
    assert verify_link(KEY, sig=sig, **ok)  # type: ignore[arg-type]
    for name, other in [
        ("amount", 2149),
        ("attempt_id", "att-2"),
        ("tenant", "bar"),
        ("currency", "EUR"),
        ("order_id", "o-8"),
    ]:
        assert not verify_link(KEY, sig=sig, **{**ok, name: other})  # type: ignore[arg-type]
    assert not verify_link("another-key", sig=sig, **ok)  # type: ignore[arg-type]
    assert link("att-2") != url  # one code per attempt, never a static one
    with pytest.raises(CallerError):
        link(amount=0)


def test_png_and_svg_carry_the_same_modules() -> None:
    qr = payment_qr(link())
    assert qr.png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height, rows, _ = png.Reader(bytes=qr.png).read()
    assert width == height
    pixels = [list(r) for r in rows]
    n = len(qr.modules)
    box = width // n
    assert box * n == width
    # Sample each module's centre: dark pixels where the QR has dark modules.
    seen = [
        [pixels[y * box + box // 2][x * box + box // 2] == 0 for x in range(n)] for y in range(n)
    ]
    assert seen == qr.modules
    assert any(any(r) for r in seen) and not all(all(r) for r in seen)
    root = ET.fromstring(qr.svg)
    assert root.tag.endswith("svg")
    path = next(el for el in root.iter() if el.tag.endswith("path"))
    # One closed square per dark module.
    assert path.get("d", "").count("z") == sum(sum(r) for r in qr.modules)
    other = payment_qr(link(amount=2151))
    assert other.modules != qr.modules


def test_bad_payloads_are_refused() -> None:
    with pytest.raises(CallerError):
        payment_qr("")
    with pytest.raises(CallerError):
        payment_qr("x" * 1001)


def test_png_is_a_real_image_of_the_right_size() -> None:
    qr = payment_qr(link())
    reader = png.Reader(file=io.BytesIO(qr.png))
    w, h, _, info = reader.read()
    assert (w, h) == (len(qr.modules) * 8, len(qr.modules) * 8)
    assert info["greyscale"] or info["planes"] in (1, 3)
