"""The RFC 6376 signing procedure, with the signature itself left to a callable.

drip signs with relaxed header and simple body canonicalization (c=relaxed/simple),
so the whole procedure is small: hash the body, build the DKIM-Signature header
with an empty b=, hash the canonicalized signed headers plus that header, and
sign the digest. It is done here rather than through dkimpy because dkimpy does
the RSA private-key operation in pure Python (13-25 ms per email against about
1 ms in OpenSSL) and has no hook to hand it a key of its own; the tests check
every signature made here with dkimpy's verifier.

Pure logic: no keys, clock or I/O here (drip/dkim.py supplies them).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence

# RFC 5322 line ends, as smtplib writes them on the wire (smtplib._fix_eols):
# a bare LF or CR becomes CRLF, so the signed bytes are the bytes that arrive
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
_WSP = re.compile(rb"[ \t]+")
_FOLD_AT = 76  # columns per line of the DKIM-Signature header, within RFC 5322's 78


def normalize_line_ends(data: bytes) -> bytes:
    """`data` with every line ending CRLF; returned as is when it already is."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") == crlf and data.count(b"\n") == crlf:
        return data
    return _LINE_END.sub(b"\r\n", data)


def split_message(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(headers, body) of a CRLF message: headers as (name, raw value) in order,
    the value with its folding kept, the body after the blank line."""
    if data.startswith(b"\r\n"):
        return [], data[2:]
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body = data[:end], data[end + 4 :]
    else:
        head, body = data.removesuffix(b"\r\n"), b""
    headers: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise ValueError(f"not a header line: {line[:60]!r}")
        headers.append((name, value))
    return headers, body


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lowercase name, unfold, runs of WSP to one space, no WSP
    around the colon or at the end. Without the trailing CRLF."""
    value = _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" \t")
    return name.strip(b" \t").lower() + b":" + value


def simple_body_hash(body: bytes) -> bytes:
    """SHA-256 of the body under RFC 6376 3.4.3 simple canonicalization: trailing
    empty lines dropped, one CRLF at the end (an empty body is one CRLF)."""
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    digest = hashlib.sha256(memoryview(body)[:end])
    digest.update(b"\r\n")
    return digest.digest()


def select_headers(
    headers: Sequence[tuple[bytes, bytes]], include: Sequence[bytes]
) -> list[tuple[bytes, bytes]]:
    """RFC 6376 5.4.2: for each name in h=, the last instance not yet used,
    from the bottom up; a name with no instance left adds nothing."""
    names = [name.strip(b" \t").lower() for name, _ in headers]
    chosen: list[tuple[bytes, bytes]] = []
    below: dict[bytes, int] = {}
    for wanted in include:
        i = below.get(wanted, len(headers))
        while i > 0:
            i -= 1
            if names[i] == wanted:
                chosen.append(headers[i])
                break
        below[wanted] = i
    return chosen


def _fold(words: Sequence[bytes], first: int) -> bytes:
    """Words joined by spaces, a line break (CRLF SP) instead of a space where
    a line would pass _FOLD_AT. Relaxed canonicalization reads either as a space."""
    out, column = bytearray(), first
    for i, word in enumerate(words):
        if i and column + 1 + len(word) > _FOLD_AT:
            out += b"\r\n "
            column = 1
        elif i:
            out += b" "
            column += 1
        out += word
        column += len(word)
    return bytes(out)


def _fold_base64(value: bytes) -> bytes:
    """b= on a line of its own, cut every 72 characters (FWS inside b= is allowed
    and some receivers mishandle a header line of several hundred characters)."""
    chunks = [value[i : i + 72] for i in range(0, len(value), 72)]
    return b"\r\n b=" + b"\r\n  ".join(chunks) if chunks else b"\r\n b="


def signature_header(
    headers: Sequence[tuple[bytes, bytes]],
    body_hash: bytes,
    *,
    domain: bytes,
    selector: bytes,
    algorithm: bytes,
    sign_digest: Callable[[bytes], bytes],
    include: Sequence[bytes],
    timestamp: int,
) -> bytes:
    """One `DKIM-Signature: ...\\r\\n` header for a message split by split_message,
    its body hashed by simple_body_hash.

    `algorithm` is b"rsa-sha256" or b"ed25519-sha256"; `sign_digest` signs the
    SHA-256 digest of the signed header data (RFC 6376 3.7, RFC 8463 3).
    `include` lists the lowercase header names for h=, in order.
    """
    tags = [
        b"v=1;",
        b"a=" + algorithm + b";",
        b"c=relaxed/simple;",
        b"d=" + domain + b";",
        b"s=" + selector + b";",
        b"t=%d;" % timestamp,
        b"h=" + b" : ".join(include) + b";",
        b"bh=" + base64.b64encode(body_hash) + b";",
    ]
    name = b"DKIM-Signature"
    unsigned = _fold(b" ".join(tags).split(b" "), len(name) + 2) + b"\r\n b="
    hashed = hashlib.sha256()
    for signed_name, value in select_headers(headers, include):
        hashed.update(relaxed_header(signed_name, value) + b"\r\n")
    # the signature header itself, b= empty and no trailing CRLF (RFC 6376 3.7)
    hashed.update(relaxed_header(name, b" " + unsigned))
    signature = base64.b64encode(sign_digest(hashed.digest()))
    return name + b": " + unsigned.removesuffix(b"\r\n b=") + _fold_base64(signature) + b"\r\n"
