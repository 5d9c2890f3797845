"""The one exception tree of the project.

Every error carries a stable ``code`` (an API contract: clients and pages key on it), an
English ``message`` for logs and operators and, where a citizen or clerk may see it, a plain
Chinese ``message_zh``. Messages never contain key material, PINs or passphrases.
"""

from __future__ import annotations

from typing import ClassVar


class EtrustError(Exception):
    """Base of every error the project raises on purpose."""

    code: ClassVar[str] = "ETRUST_ERROR"
    http_status: ClassVar[int] = 400
    message_zh: ClassVar[str] = "请求无法处理"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConfigurationError(EtrustError):
    code = "CONFIGURATION"
    http_status = 500
    message_zh = "服务配置错误"


class CryptoUnavailableError(ConfigurationError):
    """The crypto library lacks something we must not do without (fail closed)."""

    code = "CRYPTO_UNAVAILABLE"
    message_zh = "密码服务不可用"


class InvalidSignatureError(EtrustError):
    code = "SIGNATURE_INVALID"
    message_zh = "签名验证未通过"


class UnsupportedAlgorithmError(EtrustError):
    code = "ALGORITHM_UNSUPPORTED"
    message_zh = "不支持的算法"


class WeakKeyError(EtrustError):
    code = "KEY_TOO_WEAK"
    message_zh = "密钥强度不足"


class MalformedInputError(EtrustError):
    """Bytes that do not parse as what they claim to be (ASN.1, PEM, URIs)."""

    code = "MALFORMED_INPUT"
    message_zh = "数据格式错误"


class InputTooLargeError(MalformedInputError):
    code = "INPUT_TOO_LARGE"
    http_status = 413
    message_zh = "上传数据过大"


class KeyError_(EtrustError):
    """Base of key-store problems (named with a trailing underscore: ``KeyError`` is a builtin)."""

    code = "KEY_ERROR"
    message_zh = "密钥操作失败"


class KeyNotFoundError(KeyError_):
    code = "KEY_NOT_FOUND"
    http_status = 404
    message_zh = "找不到密钥"


class KeyExistsError(KeyError_):
    code = "KEY_EXISTS"
    http_status = 409
    message_zh = "密钥已存在"


class KeyStoreLockedError(KeyError_):
    """Wrong passphrase or KEK, or a KEK file others can read."""

    code = "KEYSTORE_LOCKED"
    http_status = 500
    message_zh = "密钥库无法解锁"


class BuilderError(EtrustError):
    """A builder was used wrongly (a field set twice, a required field missing)."""

    code = "BUILDER_MISUSE"
    http_status = 500


class CsrError(EtrustError):
    code = "CSR_INVALID"
    message_zh = "证书请求无效"


class ProfileError(EtrustError):
    code = "PROFILE_UNKNOWN"
    message_zh = "未知的证书模板"


class CaError(EtrustError):
    code = "CA_ERROR"
    message_zh = "证书机构操作失败"


class CaNotFoundError(CaError):
    code = "CA_NOT_FOUND"
    http_status = 404
    message_zh = "找不到该证书机构"


class CertificateNotFoundError(CaError):
    code = "CERTIFICATE_NOT_FOUND"
    http_status = 404
    message_zh = "找不到该证书"


class AlreadyRevokedError(CaError):
    code = "ALREADY_REVOKED"
    http_status = 409
    message_zh = "证书已被吊销"


class OcspRequestError(EtrustError):
    """Maps to the OCSP ``malformedRequest`` status."""

    code = "OCSP_MALFORMED_REQUEST"
    message_zh = "OCSP 请求格式错误"


class TimestampRequestError(EtrustError):
    """Maps to a TSA rejection; ``failure_info`` is the RFC 3161 PKIFailureInfo bit name."""

    code = "TSA_BAD_REQUEST"
    message_zh = "时间戳请求无效"

    def __init__(self, message: str, *, failure_info: str = "bad_request") -> None:
        super().__init__(message, code="TSA_BAD_ALG" if failure_info == "bad_alg" else None)
        self.failure_info = failure_info


class AuthError(EtrustError):
    code = "UNAUTHORIZED"
    http_status = 401
    message_zh = "未授权"


class ForbiddenError(AuthError):
    code = "FORBIDDEN"
    http_status = 403
    message_zh = "无权执行此操作"


class NotFoundError(EtrustError):
    code = "NOT_FOUND"
    http_status = 404
    message_zh = "找不到请求的对象"


class ConflictError(EtrustError):
    code = "CONFLICT"
    http_status = 409
    message_zh = "对象已存在"


class TimestampTokenError(InvalidSignatureError):
    """A time-stamp token or reply that does not hold up (RFC 3161 §2.4.2 checks)."""

    code = "TIMESTAMP_INVALID"
    message_zh = "时间戳无效"


class TimestampImprintMismatchError(TimestampTokenError):
    """The token is sound but stamps other data (or answers another request)."""

    code = "TIMESTAMP_IMPRINT_MISMATCH"
    message_zh = "时间戳与数据不符"


class TimestampRejectedError(TimestampTokenError):
    """The TSA answered with a status other than granted; no token to check."""

    code = "TIMESTAMP_REJECTED"
    message_zh = "时间戳服务拒绝了请求"


class TimestampCertificateError(TimestampTokenError):
    """The signer is no TSA (no sole, critical timeStamping EKU) or leads to no trusted CA."""

    code = "TIMESTAMP_CERT_INVALID"
    message_zh = "时间戳服务证书不可信"


class OcspResponseError(InvalidSignatureError):
    """An OCSP response that cannot be relied on: unreadable, stale, wrong nonce, other issuer."""

    code = "OCSP_RESPONSE_INVALID"
    message_zh = "OCSP 响应无效"


class OcspResponseRefusedError(OcspResponseError):
    """The responder answered with a status other than successful; no statuses to read."""

    code = "OCSP_RESPONSE_REFUSED"
    message_zh = "OCSP 服务拒绝了请求"


class OcspResponderUnauthorizedError(OcspResponseError):
    """The signer is neither the CA nor a responder it certified with id-kp-OCSPSigning."""

    code = "OCSP_RESPONDER_UNAUTHORIZED"
    message_zh = "OCSP 响应签发者未获授权"


class DeviceError(KeyError_):
    """A signing device (PKCS#11 token, SKF USB key, SDF card) failed or refused."""

    code = "DEVICE_ERROR"
    http_status = 503
    message_zh = "密码设备操作失败"


class DeviceUnavailableError(DeviceError):
    """The device or its library is not there (removed, not plugged in, module missing)."""

    code = "DEVICE_UNAVAILABLE"
    message_zh = "密码设备不可用"


class PinIncorrectError(DeviceError):
    """Wrong PIN; ``attempts_left`` is what the device reports, when it reports it."""

    code = "PIN_INCORRECT"
    http_status = 401
    message_zh = "口令错误"

    def __init__(self, message: str, *, attempts_left: int | None = None) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left


class PinLockedError(DeviceError):
    code = "PIN_LOCKED"
    http_status = 423
    message_zh = "口令已锁定"


class MechanismUnsupportedError(DeviceError, UnsupportedAlgorithmError):
    """The device cannot do this algorithm (e.g. SM2 on a token without a vendor mechanism)."""

    code = "MECHANISM_UNSUPPORTED"
    http_status = 400
    message_zh = "密码设备不支持该算法"


class ApprovalError(EtrustError):
    """Dual control refused: not enough valid approvals, or an approval that cannot count."""

    code = "APPROVAL_REFUSED"
    http_status = 403
    message_zh = "未获得足够的审批"


class ApprovalRequiredError(ApprovalError):
    code = "APPROVAL_REQUIRED"


class KeyStateError(KeyError_):
    """A lifecycle step the key's state does not allow (e.g. destroying an active key)."""

    code = "KEY_STATE"
    http_status = 409
    message_zh = "密钥状态不允许此操作"


class MerkleProofError(InvalidSignatureError):
    """A transparency-log inclusion or consistency proof that does not hold (RFC 9162 §2.1)."""

    code = "MERKLE_PROOF_INVALID"
    message_zh = "透明日志证明验证失败"


class ServiceBusyError(EtrustError):
    """Too much of a bounded kind of work at once (photos being decoded, say): try again."""

    code = "SERVICE_BUSY"
    http_status = 503
    message_zh = "服务繁忙，请稍后重试"
