"""SM2 and RSA-2048 sign and verify per second, against openssl speed in the same run."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.common import openssl_speed, rate, row
from trust.sm2 import Sm2PrivateKey


def run(seconds: float) -> list[str]:
    message = b"x" * 64
    sm2 = Sm2PrivateKey.generate()
    sm2_sig = sm2.sign(message)
    # openssl before and after ours, averaged: the machine's speed drifts within a run.
    before = openssl_speed("sm2", int(max(seconds, 1)))
    ours_sm2 = (
        rate(lambda: sm2.sign(message), seconds),
        rate(lambda: sm2.public_key.verify(sm2_sig, message), seconds),
    )
    after = openssl_speed("sm2", int(max(seconds, 1)))
    ref_sm2 = ((before[0] + after[0]) / 2, (before[1] + after[1]) / 2)
    key = rsa.generate_private_key(65537, 2048)
    public = key.public_key()
    rsa_sig = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    ours_rsa = (
        rate(lambda: key.sign(message, padding.PKCS1v15(), hashes.SHA256()), seconds),
        rate(lambda: public.verify(rsa_sig, message, padding.PKCS1v15(), hashes.SHA256()), seconds),
    )
    ref_rsa = openssl_speed("rsa2048", int(max(seconds, 1)))
    return [
        row("SM2 sign (ours vs openssl speed sm2)", ours_sm2[0], ref_sm2[0], "target >= 0.9x"),
        row("SM2 verify", ours_sm2[1], ref_sm2[1], "target >= 0.9x"),
        row("RSA-2048 sign (cryptography vs openssl)", ours_rsa[0], ref_rsa[0]),
        row("RSA-2048 verify", ours_rsa[1], ref_rsa[1]),
        row("SM2 sign / RSA-2048 sign (ours)", ours_sm2[0], ours_rsa[0]),
    ]
