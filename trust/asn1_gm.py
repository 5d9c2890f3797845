"""Teach asn1crypto the Chinese (GM/T 0006) OIDs we read and write.

Importing this module registers the names once; every module that parses or builds SM2
structures imports it, so callers never see an unnamed SM2 OID.
"""

from __future__ import annotations

from asn1crypto import algos, core, keys, x509

SM2_CURVE_OID = "1.2.156.10197.1.301"
SM2_SIGN_OID = "1.2.156.10197.1.301.1"  # SM2-1, seen as the CMS digestEncryptionAlgorithm
SM3_OID = "1.2.156.10197.1.401"
SM2_SM3_OID = "1.2.156.10197.1.501"

# GM/T 0015 identity extensions (standards.md §5.4), classic numbering.
GM_IDENTIFY_CODE_OID = "1.2.156.10260.4.1.1"
GM_INSURANCE_NUMBER_OID = "1.2.156.10260.4.1.2"
GM_ICREGISTRATION_NUMBER_OID = "1.2.156.10260.4.1.3"
GM_ORGANIZATION_CODE_OID = "1.2.156.10260.4.1.4"
GM_TAXATION_NUMBER_OID = "1.2.156.10260.4.1.5"


class IdentifyCode(core.Choice):
    """GM/T 0015 IdentifyCode: the holder's identity document number (tagging [M])."""

    _alternatives = [  # noqa: RUF012 (asn1crypto declares structures as class lists)
        ("residenter_card_number", core.PrintableString, {"implicit": 0}),
        ("military_officer_card_number", core.UTF8String, {"implicit": 1}),
        ("passport_number", core.PrintableString, {"implicit": 2}),
    ]


GM_IDENTITY_EXTENSIONS: dict[str, tuple[str, type[core.Asn1Value]]] = {
    "identify_code": (GM_IDENTIFY_CODE_OID, IdentifyCode),
    "insurance_number": (GM_INSURANCE_NUMBER_OID, core.PrintableString),
    "ic_registration_number": (GM_ICREGISTRATION_NUMBER_OID, core.PrintableString),
    "organization_code": (GM_ORGANIZATION_CODE_OID, core.PrintableString),
    "taxation_number": (GM_TAXATION_NUMBER_OID, core.PrintableString),
}
"""Our names for the GM/T 0015 identity extensions -> (OID, value type)."""


def _register() -> None:
    if SM2_CURVE_OID not in keys.NamedCurve._map:
        keys.NamedCurve.register("sm2p256v1", SM2_CURVE_OID, 32)
    algos.DigestAlgorithmId._map.setdefault(SM3_OID, "sm3")
    algos.SignedDigestAlgorithmId._map.setdefault(SM2_SM3_OID, "sm2_sm3")
    algos.SignedDigestAlgorithmId._map.setdefault(SM2_SIGN_OID, "sm2")
    reverse = algos.SignedDigestAlgorithmId._reverse_map
    if reverse is not None:
        reverse.setdefault("sm2_sm3", SM2_SM3_OID)
        reverse.setdefault("sm2", SM2_SIGN_OID)
    digest_reverse = algos.DigestAlgorithmId._reverse_map
    if digest_reverse is not None:
        digest_reverse.setdefault("sm3", SM3_OID)
    for name, (oid, spec) in GM_IDENTITY_EXTENSIONS.items():
        ext_name = f"gm_{name}"
        x509.ExtensionId._map.setdefault(oid, ext_name)
        if x509.ExtensionId._reverse_map is not None:
            x509.ExtensionId._reverse_map.setdefault(ext_name, oid)
        x509.Extension._oid_specs.setdefault(ext_name, spec)


_register()
