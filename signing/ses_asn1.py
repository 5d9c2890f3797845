"""ASN.1 of GB/T 38540 electronic seals (SESeal) and signatures (SES_Signature), three generations.

GM/T 0031-2014 ("v1"), GB/T 38540-2020 (v4) and GM/T 0031-2025 (v5) share most types; v4 and
v5 share every type (v5 only fills the optional timestamp), so the v5 names are aliases. The
generation is told by structure (the number of elements) and checked against the header version
by :mod:`signing.seal` (standards.md §1.8).

Readers are lenient where real producers differ: times may be UTCTime or GeneralizedTime, v1
``timeInfo``/``dataHash`` may be OCTET STRING instead of BIT STRING, and the optional ``[0]``
fields may be EXPLICIT, IMPLICIT or untagged. Those fields are declared :class:`core.Any` and
decoded by the helpers below; writers use EXPLICIT tags, as ofdrw does.
"""

from __future__ import annotations

from asn1crypto import core, parser

from trust import der
from trust.errors import MalformedInputError

_BIT_STRING, _OCTET_STRING, _SEQUENCE, _CONTEXT_0 = 0x03, 0x04, 0x30, 0x80
_CONSTRUCTED = 0x20


class SesTime(core.Choice):
    """v1 writes UTCTime, v4/v5 GeneralizedTime; both are read everywhere."""

    _alternatives = [  # noqa: RUF012 (asn1crypto declares structures as class lists)
        ("utc_time", core.UTCTime),
        ("generalized_time", core.GeneralizedTime),
    ]


class SesHeader(core.Sequence):
    _fields = [  # noqa: RUF012
        ("id", core.IA5String),  # always "ES"
        ("version", core.Integer),
        ("vid", core.IA5String),  # vendor id
    ]


class ExtData(core.Sequence):
    _fields = [  # noqa: RUF012
        ("extn_id", core.ObjectIdentifier),
        ("critical", core.Boolean, {"default": False}),  # real seals encode FALSE explicitly
        ("extn_value", core.OctetString),
    ]


class ExtensionDatas(core.SequenceOf):
    _child_spec = ExtData


class CertInfoList(core.SequenceOf):
    """certListType 1 (and the v1 certList): DER certificates of the allowed signers."""

    _child_spec = core.OctetString


class CertDigestObj(core.Sequence):
    _fields = [  # noqa: RUF012
        ("type", core.PrintableString),  # names the hash, e.g. "SM3"
        ("value", core.OctetString),
    ]


class CertDigestList(core.SequenceOf):
    """certListType 2: hashes of the allowed signers' certificates."""

    _child_spec = CertDigestObj


class SesPictureInfo(core.Sequence):
    _fields = [  # noqa: RUF012
        ("type", core.IA5String),  # "PNG", "ofd", ...
        ("data", core.OctetString),
        ("width", core.Integer),  # millimetres
        ("height", core.Integer),
    ]


class SesPropertyInfoV1(core.Sequence):
    _fields = [  # noqa: RUF012
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("cert_list", CertInfoList),
        ("create_date", SesTime),
        ("valid_start", SesTime),
        ("valid_end", SesTime),
    ]


class SesPropertyInfoV4(core.Sequence):
    """``cert_list`` is an untagged CHOICE of two SEQUENCE OFs: read it by ``cert_list_type``."""

    _fields = [  # noqa: RUF012
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("cert_list_type", core.Integer),
        ("cert_list", core.Any),
        ("create_date", SesTime),
        ("valid_start", SesTime),
        ("valid_end", SesTime),
    ]


class SesSealInfoV1(core.Sequence):
    _fields = [  # noqa: RUF012
        ("header", SesHeader),
        ("es_id", core.IA5String),
        ("property", SesPropertyInfoV1),
        ("picture", SesPictureInfo),
        ("ext_datas", core.Any, {"optional": True}),  # see ext_datas()
    ]


class SesSealInfoV4(core.Sequence):
    _fields = [  # noqa: RUF012
        ("header", SesHeader),
        ("es_id", core.IA5String),
        ("property", SesPropertyInfoV4),
        ("picture", SesPictureInfo),
        ("ext_datas", core.Any, {"optional": True}),  # untagged in the wild; see ext_datas()
    ]


class SesSignInfoV1(core.Sequence):
    _fields = [  # noqa: RUF012
        ("cert", core.OctetString),  # maker certificate
        ("signature_algorithm", core.ObjectIdentifier),
        ("sign_data", core.BitString),
    ]


class SESealV1(core.Sequence):
    """GM/T 0031-2014: two elements."""

    _fields = [  # noqa: RUF012
        ("e_seal_info", SesSealInfoV1),
        ("sign_info", SesSignInfoV1),
    ]


class SESealV4(core.Sequence):
    """GB/T 38540-2020: four elements; GM/T 0031-2025 adds ``[0] timeStamp`` (see tagged_bit_string)."""

    _fields = [  # noqa: RUF012
        ("e_seal_info", SesSealInfoV4),
        ("cert", core.OctetString),  # maker certificate
        ("sign_alg_id", core.ObjectIdentifier),
        ("signed_value", core.BitString),
        ("time_stamp", core.Any, {"optional": True}),
    ]


SESealV5 = SESealV4
SesSealInfoV5 = SesSealInfoV4


class TBSSignV1(core.Sequence):
    """v1 puts the signer certificate and algorithm inside the signed part."""

    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("eseal", core.Any),  # parsed from its own span by the seal parser
        ("time_info", core.Any),  # BIT STRING (or OCTET STRING) of time bytes; see octets()
        ("data_hash", core.Any),
        ("property_info", core.IA5String),
        ("cert", core.OctetString),
        ("signature_algorithm", core.ObjectIdentifier),
    ]


class SESSignatureV1(core.Sequence):
    _fields = [  # noqa: RUF012
        ("to_sign", TBSSignV1),
        ("signature", core.BitString),
    ]


class TBSSignV4(core.Sequence):
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("eseal", core.Any),
        ("time_info", SesTime),
        ("data_hash", core.Any),
        ("property_info", core.IA5String),
        ("ext_datas", core.Any, {"optional": True}),  # [0]; see ext_datas()
    ]


class SESSignatureV4(core.Sequence):
    _fields = [  # noqa: RUF012
        ("to_sign", TBSSignV4),
        ("cert", core.OctetString),  # signer certificate
        ("signature_alg_id", core.ObjectIdentifier),
        ("signature", core.BitString),
        ("time_stamp", core.Any, {"optional": True}),
    ]


SESSignatureV5 = SESSignatureV4
TBSSignV5 = TBSSignV4


class Elements(core.SequenceOf):
    """Any SEQUENCE, element by element: how many there are tells the generation apart."""

    _child_spec = core.Any


# --- decoding the lenient fields ---------------------------------------------------------------


def raw(value: core.Any) -> bytes:
    """The original TLV of a value held as Any (``Any.dump()`` insists on a universal type)."""
    return bytes(value._header or b"") + bytes(value.contents or b"") + bytes(value._trailer or b"")


def _tag_and_contents(value: core.Any) -> tuple[int, bytes]:
    _, _, _, header, contents, _ = parser.parse(raw(value), strict=True)
    return header[0], bytes(contents)


def bit_string_octets(contents: bytes, what: str) -> bytes:
    """The octets of a BIT STRING's contents; unused bits would give one value two encodings."""
    contents = bytes(contents or b"")
    if not contents or contents[0] != 0:
        raise MalformedInputError(f"{what}: BIT STRING with unused bits or no content")
    return contents[1:]


def check_shape(value: core.Asn1Value, what: str) -> None:
    """Parse ``value`` completely and refuse extra elements, which asn1crypto keeps silently.

    :class:`core.Any` fields are left alone: their readers below decode them.
    """
    if isinstance(value, core.Sequence):
        fields = value._fields
        if len(value) > len(fields):
            raise MalformedInputError(
                f"{what}: {len(value)} elements where {len(fields)} are defined"
            )
        for name, *_ in fields:
            check_shape(value[name], f"{what}.{name}")
    elif isinstance(value, core.SequenceOf):
        for child in value:
            check_shape(child, what)
    elif isinstance(value, core.Choice):
        check_shape(value.chosen, what)
    elif isinstance(value, core.BitString):
        # .native would expand a signature into a tuple of bits; the encoding rule is all
        # there is to check: an unused-bits octet of 0-7, and 0 for an empty string.
        contents = bytes(value.contents or b"")
        if not contents or contents[0] > 7 or (len(contents) == 1 and contents[0]):
            raise MalformedInputError(f"{what}: malformed BIT STRING")
    elif not isinstance(value, core.Any | core.Void):
        value.native  # noqa: B018  (forces the lazy decoding, so bad content fails here)


def octets(value: core.Any, what: str) -> bytes:
    """The bytes of a BIT STRING (whole octets only) or, as some producers write, OCTET STRING."""
    tag, contents = _tag_and_contents(value)
    if tag == _BIT_STRING:
        return bit_string_octets(contents, what)
    if tag == _OCTET_STRING:
        return contents
    raise MalformedInputError(f"{what}: expected a BIT STRING, found tag 0x{tag:02x}")


def tagged_bit_string(value: core.Any, what: str) -> bytes:
    """An optional ``[0] BIT STRING`` read as EXPLICIT, IMPLICIT or untagged (standards.md §1.1)."""
    tag, contents = _tag_and_contents(value)
    if tag == _BIT_STRING:
        return bit_string_octets(contents, what)
    if tag == _CONTEXT_0:  # IMPLICIT: the BIT STRING's own contents
        return bit_string_octets(contents, what)
    if tag == _CONTEXT_0 | _CONSTRUCTED:  # EXPLICIT: one BIT STRING inside
        inner_tag, inner = _tag_and_contents(core.Any.load(contents, strict=True))
        if inner_tag != _BIT_STRING:
            raise MalformedInputError(f"{what}: [0] does not hold a BIT STRING")
        return bit_string_octets(inner, what)
    raise MalformedInputError(f"{what}: unexpected tag 0x{tag:02x}")


def ext_datas(value: core.Any, what: str) -> ExtensionDatas:
    """Optional ExtensionDatas, untagged or ``[0]`` EXPLICIT or IMPLICIT, fully parsed."""
    tag, contents = _tag_and_contents(value)
    if tag == _SEQUENCE:
        candidates = [raw(value)]
    elif tag == _CONTEXT_0 | _CONSTRUCTED:
        # EXPLICIT holds one SEQUENCE OF; IMPLICIT holds the ExtData elements themselves.
        candidates = [contents, der.sequence(contents)]
    else:
        raise MalformedInputError(f"{what}: unexpected tag 0x{tag:02x}")
    for candidate in candidates:
        try:
            parsed: ExtensionDatas = ExtensionDatas.load(candidate, strict=True)
            parsed.native  # noqa: B018  (parse it all now)
        except (ValueError, TypeError):
            continue
        check_shape(parsed, what)
        return parsed
    raise MalformedInputError(f"{what}: not a list of extensions")


def explicit_bit_string(data: bytes) -> bytes:
    """``[0] EXPLICIT BIT STRING``, the form we write for timestamps."""
    return der.explicit(0, der.bit_string(data))
