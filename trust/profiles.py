"""Certificate profiles: what each kind of certificate says about its key.

A profile turns a bare builder into a root CA, an issuing CA, a seal maker's (制章者), an
organisation seal signer's (签章者), a person's, an OCSP responder's or a TSA's certificate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from asn1crypto import keys, x509

from trust.asn1_gm import GM_IDENTITY_EXTENSIONS
from trust.certificates import CertificateBuilder, key_identifier
from trust.errors import MalformedInputError, ProfileError

_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]{1,64}")
"""X.680 PrintableString, the type of the GM/T 0015 identity extensions."""


@dataclass(frozen=True)
class Profile:
    name: str
    title_zh: str
    validity: timedelta
    key_usage: frozenset[str]
    ca: bool = False
    path_length: int | None = None
    extended_key_usage: tuple[str, ...] = ()
    eku_critical: bool = False
    ocsp_no_check: bool = False


_YEAR = timedelta(days=365)

PUBLICATION_EKU = "2.25.252713268249227096773843774320824544856"
"""Extended key usage of the registry's publication key (trust lists, status lists, log
checkpoints): a UUID-based OID (X.667), so a verifier accepts a trust list only from the key
certified for it, not from any key under the same root (a department's QR key, say)."""
_SIGN = frozenset({"digital_signature", "non_repudiation"})

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "root-ca", "根证书机构", 20 * _YEAR, frozenset({"key_cert_sign", "crl_sign"}), ca=True
        ),
        Profile(
            "issuing-ca",
            "签发证书机构",
            10 * _YEAR,
            frozenset({"key_cert_sign", "crl_sign"}),
            ca=True,
            path_length=0,
        ),
        Profile("seal-maker", "制章者", 5 * _YEAR, _SIGN),
        Profile("seal-signer", "签章者（单位）", 3 * _YEAR, _SIGN),
        Profile("person-signer", "个人签名", 2 * _YEAR, _SIGN),
        Profile("service-signer", "服务签名（审计、记录）", 3 * _YEAR, _SIGN),
        Profile(
            "registry-publisher",
            "证照库发布签名（信任列表、状态列表、透明日志）",
            3 * _YEAR,
            frozenset({"digital_signature"}),
            extended_key_usage=(PUBLICATION_EKU,),
        ),
        Profile(
            "ocsp-signer",
            "OCSP 响应签名",
            _YEAR,
            frozenset({"digital_signature"}),
            extended_key_usage=("ocsp_signing",),
            ocsp_no_check=True,
        ),
        Profile(
            "tsa",
            "时间戳服务",
            5 * _YEAR,
            frozenset({"digital_signature", "non_repudiation"}),
            extended_key_usage=("time_stamping",),
            eku_critical=True,
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ProfileError(f"unknown profile {name!r}; known profiles: {known}") from None


@dataclass(frozen=True)
class IssuerPointers:
    """Where relying parties find the issuer's CRL, OCSP responder and certificate."""

    crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)


def profile_template(
    profile: Profile,
    *,
    issuer_name: x509.Name,
    issuer_key: keys.PublicKeyInfo,
    pointers: IssuerPointers = IssuerPointers(),
    policies: tuple[str, ...] = (),
) -> CertificateBuilder:
    """A builder with the issuer and every extension that is the same for all its subjects.

    A CA keeps one per profile and finishes it per certificate with :func:`finish_profile`.
    """
    b = CertificateBuilder().issuer_name(issuer_name)
    b = b.add_extension(
        "basic_constraints",
        {"ca": True, "path_len_constraint": profile.path_length} if profile.ca else {"ca": False},
        critical=True,
    )
    b = b.add_extension("key_usage", set(profile.key_usage), critical=True)
    if profile.extended_key_usage:
        b = b.add_extension(
            "extended_key_usage", list(profile.extended_key_usage), critical=profile.eku_critical
        )
    b = b.add_extension("authority_key_identifier", {"key_identifier": key_identifier(issuer_key)})
    if pointers.crl_url:
        b = b.add_extension(
            "crl_distribution_points",
            [{"distribution_point": {"full_name": [_uri(pointers.crl_url)]}}],
        )
    access = []
    if pointers.ocsp_url and not profile.ocsp_no_check:
        access.append({"access_method": "ocsp", "access_location": _uri(pointers.ocsp_url)})
    if pointers.ca_issuers_url:
        access.append(
            {"access_method": "ca_issuers", "access_location": _uri(pointers.ca_issuers_url)}
        )
    if access:
        b = b.add_extension("authority_information_access", access)
    if policies:
        b = b.add_extension(
            "certificate_policies", [{"policy_identifier": oid} for oid in policies]
        )
    if profile.ocsp_no_check:
        b = b.add_extension("ocsp_no_check", None)
    return b


def finish_profile(
    template: CertificateBuilder,
    *,
    subject_key: keys.PublicKeyInfo,
    identity: Mapping[str, str] | None = None,
) -> CertificateBuilder:
    """Add the per-subject extensions: the key identifier and GM/T 0015 identity numbers."""
    b = template.public_key(subject_key).add_key_identifier(subject_key)
    for key, value in (identity or {}).items():
        if key not in GM_IDENTITY_EXTENSIONS:
            raise MalformedInputError(
                f"unknown identity extension {key!r}; known: {', '.join(GM_IDENTITY_EXTENSIONS)}"
            )
        if not _PRINTABLE.fullmatch(value):
            raise MalformedInputError(
                f"identity value for {key} must be 1-64 PrintableString characters "
                "(letters, digits, space and ' ( ) + , - . / : = ?)"
            )
        oid, spec = GM_IDENTITY_EXTENSIONS[key]
        inner = (
            spec(name="residenter_card_number", value=value)
            if key == "identify_code"
            else spec(value)
        )
        # Encoded here: asn1crypto would put a CHOICE in place of the OCTET STRING wrapper.
        b = b.add_encoded_extension(oid, inner.dump())
    return b
