"""Errors of e-license identifiers and holder codes.

Both are malformed input (HTTP 400): a clerk or citizen typed or pasted something that is not
what it claims to be. The Chinese message is generic on purpose; the English ``message`` says
exactly which part is wrong, and never repeats a citizen's ID number.
"""

from __future__ import annotations

from trust.errors import ConflictError, ForbiddenError, MalformedInputError


class LicenseIdError(MalformedInputError):
    """A GB/T 36904 license identifier (证照标识) that does not hold up."""

    code = "LICENSE_ID_INVALID"
    message_zh = "证照标识不正确"


class HolderCodeError(MalformedInputError):
    """A holder code (持证主体代码) that fails the rules of its GB/T 36903 code type."""

    code = "HOLDER_CODE_INVALID"
    message_zh = "持证主体代码不正确"


class LicenseTypeError(MalformedInputError):
    """A license type definition that does not hold together (its code, schema or labels)."""

    code = "LICENSE_TYPE_INVALID"
    message_zh = "证照类型定义不正确"


class LicenseDataError(MalformedInputError):
    """License fields that the type's schema refuses; the message lists every problem."""

    code = "LICENSE_DATA_INVALID"
    http_status = 422
    message_zh = "证照信息不符合该证照类型的要求"


class IssuerNotAllowedError(ForbiddenError):
    """A department issuing a type it is not an issuer of."""

    code = "ISSUER_NOT_ALLOWED"
    message_zh = "本部门无权签发该类证照"


class IdempotencyConflictError(ConflictError):
    """An Idempotency-Key used again with a different request."""

    code = "IDEMPOTENCY_KEY_REUSED"
    message_zh = "请求标识已用于另一请求"


class LicenseStateError(ConflictError):
    """A change the license's status does not allow (resuming a revoked license, say)."""

    code = "LICENSE_STATE"
    message_zh = "证照当前状态不允许此操作"


class RegistryInUseError(ConflictError):
    """A change that licenses already issued would not survive (a schema their fields fail, a
    new USCC for a department whose identifiers carry the old one)."""

    code = "REGISTRY_IN_USE"
    message_zh = "已签发的证照依赖当前设置，不能这样修改"
