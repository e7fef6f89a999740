"""One QR per payment attempt, bound to its amount and id (never a static QR).

The QR holds a pay link to the server's pay-at-table page:
``<base>/pay/<tenant>/<order_id>/<attempt_id>?amount=<minor>&currency=<ISO>&sig=<hex>``,
where ``sig`` is HMAC-SHA256 under the server's pay-link key over the tenant, order id,
attempt id, amount and currency. The page refuses a link whose signature does not match,
so a sticker printed with another amount or another payment's id opens nothing; and because
the attempt id is in it, the same table never reuses a code.

Images: PNG (through ``pypng``) and SVG (a path, no dependency), from the ``qrcode`` package
(``payments`` extra), error correction M.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from urllib.parse import quote, urlencode

import msgspec

from fynlo_sync.errors import CallerError, MissingDependencyError

try:
    import qrcode
    import qrcode.image.pure
    import qrcode.image.svg
except ImportError as exc:  # pragma: no cover - part of the payments extra
    raise MissingDependencyError("qrcode", "payments") from exc

__all__ = ["PaymentQr", "link_signature", "pay_link", "payment_qr", "verify_link"]

_SIG_HEX = 32


class PaymentQr(msgspec.Struct, frozen=True, kw_only=True):
    payload: str
    png: bytes
    svg: str
    #: The QR's modules, row by row (True is dark), for checks.
    modules: list[list[bool]]


def link_signature(
    key: str, tenant: str, order_id: str, attempt_id: str, amount: int, currency: str
) -> str:
    message = f"{tenant}\n{order_id}\n{attempt_id}\n{amount}\n{currency}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:_SIG_HEX]


def pay_link(
    base_url: str,
    key: str,
    *,
    tenant: str,
    order_id: str,
    attempt_id: str,
    amount: int,
    currency: str,
) -> str:
    """The signed link a payment's QR holds."""
    if type(amount) is not int or amount <= 0:
        raise CallerError("a pay link needs a positive amount", reason="invalid-amount")
    sig = link_signature(key, tenant, order_id, attempt_id, amount, currency)
    query = urlencode({"amount": amount, "currency": currency, "sig": sig})
    path = "/".join(quote(part, safe="") for part in (tenant, order_id, attempt_id))
    return f"{base_url.rstrip('/')}/pay/{path}?{query}"


def verify_link(
    key: str,
    *,
    tenant: str,
    order_id: str,
    attempt_id: str,
    amount: int,
    currency: str,
    sig: str,
) -> bool:
    """Does ``sig`` bind this tenant, order, attempt, amount and currency?"""
    expected = link_signature(key, tenant, order_id, attempt_id, amount, currency)
    return hmac.compare_digest(expected.encode(), sig.encode())


def payment_qr(payload: str) -> PaymentQr:
    """The QR of ``payload`` as PNG and SVG."""
    if not payload or len(payload) > 1000:
        raise CallerError("a QR payload must be 1 to 1000 characters", reason="invalid-payload")
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=8)
    code.add_data(payload)
    code.make(fit=True)
    png = io.BytesIO()
    code.make_image(image_factory=qrcode.image.pure.PyPNGImage).save(png)
    svg = code.make_image(image_factory=qrcode.image.svg.SvgPathImage).to_string()
    matrix = [[bool(cell) for cell in row] for row in code.get_matrix()]
    return PaymentQr(
        payload=payload,
        png=png.getvalue(),
        svg=svg.decode() if isinstance(svg, bytes) else str(svg),
        modules=matrix,
    )
