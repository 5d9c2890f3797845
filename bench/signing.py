"""Seals, SES signatures, one-page OFD licenses and PAdES signatures per second.

SES signing and verification are compared with the raw SM2 sign and verify of the same key
over the same number of bytes, measured alternately in the same run (bench.common.paired).
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import timedelta
from pathlib import Path

from bench.common import paired, rate, row


def run(seconds: float) -> list[str]:
    from signing.context import VerifyContext
    from signing.ofd import sign_ofd, verify_ofd
    from signing.ofd_package import PageSpec, TextBlock, build_ofd, qr_block
    from signing.seal import SealPicture, SealSpec, make_seal
    from signing.seal_picture import red_seal_png
    from signing.ses import sign_ses, verify_ses
    from tests.signing_pki import make_signing_pki
    from trust.algorithms import SM2_SM3

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_signing_pki("sm2", Path(tmp) / "sm2")
        picture = SealPicture("PNG", red_seal_png("示范盟市场监督管理局"), 40, 40)

        def spec(n: int = 0) -> SealSpec:
            return SealSpec(
                es_id=f"15990000{n:06d}",
                name="示范盟市场监督管理局",
                seal_type=1,
                signer_certs=[pki.signer.cert],
                valid_from=pki.now - timedelta(hours=1),
                valid_to=pki.now + timedelta(days=365),
                picture=picture,
            )

        lines.append(
            row(
                "SM2 seals made (with a drawn picture)",
                rate(lambda: make_seal(spec(), pki.maker.key, pki.maker.cert), seconds, batch=5),
            )
        )
        seal = make_seal(spec(), pki.maker.key, pki.maker.cert)
        signer = pki.signer
        digest = hashlib.new("sm3", b"Signature.xml bytes").digest()

        def ses() -> bytes:
            return sign_ses(
                seal,
                signer.key,
                signer.cert,
                data_hash=digest,
                property_info="/Doc_0/Signs/Sign_0/Signature.xml",
            )

        signature = ses()
        tbs_size = len(seal) + 100
        message = b"x" * tbs_size
        raw_signature = signer.key.sign(message)
        ours_sign, raw_sign = paired(
            lambda t: rate(ses, t, batch=10),
            lambda t: rate(lambda: signer.key.sign(message), t, batch=10),
            2 * seconds,
        )
        lines.append(row("SES signatures made (vs raw SM2 sign)", ours_sign, raw_sign, ">= 0.8x"))
        untrusting = VerifyContext(clock=lambda: pki.now)
        ours_verify, raw_verify = paired(
            lambda t: rate(lambda: verify_ses(signature, untrusting), t, batch=10),
            lambda t: rate(
                lambda: SM2_SM3.verify(signer.cert.public_key, raw_signature, message), t, batch=10
            ),
            2 * seconds,
        )
        lines.append(
            row("SES verified, crypto (vs raw SM2 verify)", ours_verify, raw_verify, ">= 0.8x")
        )
        trusting = pki.context()
        lines.append(
            row(
                "SES verified, with chains and CRLs",
                rate(lambda: verify_ses(signature, trusting), seconds, batch=5),
            )
        )

        license_ofd = build_ofd(
            [
                PageSpec(
                    [
                        TextBlock("营业执照", 80, 30, 10),
                        TextBlock("统一社会信用代码：91152900MA0N000000", 30, 60),
                        TextBlock("名称：示范盟某某商贸有限公司", 30, 70),
                        TextBlock("法定代表人：张三", 30, 80),
                        qr_block("https://verify.example.invalid/v#AAAA", 150, 230, 30),
                    ]
                )
            ],
            title="营业执照",
        )
        signed_ofd = sign_ofd(license_ofd, seal, signer.key, signer.cert)
        lines.append(
            row(
                "one-page OFD licenses sealed (SM2)",
                rate(
                    lambda: sign_ofd(license_ofd, seal, signer.key, signer.cert), seconds, batch=10
                ),
                None,
                ">= 200/s",
            )
        )
        lines.append(
            row(
                "one-page OFD licenses verified, crypto",
                rate(lambda: verify_ofd(signed_ofd, untrusting), seconds, batch=10),
            )
        )
        lines.append(
            row(
                "one-page OFD licenses verified, full",
                rate(lambda: verify_ofd(signed_ofd, trusting), seconds, batch=5),
            )
        )
        lines += _pades(Path(tmp), seconds)
    return lines


def _pades(folder: Path, seconds: float) -> list[str]:
    from signing.pdf import blank_pdf, sign_pdf
    from tests.signing_pki import make_signing_pki

    lines = []
    pdf = blank_pdf(["行政许可决定书", "准予许可"])
    for kind in ("rsa", "ec", "sm2"):
        pki = make_signing_pki(kind, folder / f"pades-{kind}")
        key, cert, chain = pki.signer.key, pki.signer.cert, pki.chain

        def sign(k: object = key, c: object = cert, ch: object = chain) -> bytes:
            return sign_pdf(pdf, k, c, chain=ch, level="B-B")  # type: ignore[arg-type]

        sign()
        lines.append(
            row(
                f"one-page PAdES B-B signatures ({kind})",
                rate(sign, seconds, batch=5),
                None,
                ">= 50/s",
            )
        )
    return lines
