"""A tiny pure-Python SM2 (GB/T 32918.2) used only as an independent cross-check in tests.

It is slow and not constant-time; product code signs through OpenSSL (trust.sm2).
"""

from __future__ import annotations

Point = tuple[int, int] | None


def _add(p1: Point, p2: Point, a: int, p: int) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % p == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + a) * pow(2 * y1, -1, p) % p
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, p) % p
    x3 = (lam * lam - x1 - x2) % p
    return x3, (lam * (x1 - x3) - y1) % p


def mul(k: int, point: Point, a: int, p: int) -> Point:
    result: Point = None
    while k:
        if k & 1:
            result = _add(result, point, a, p)
        point = _add(point, point, a, p)
        k >>= 1
    return result


def sign_with_k(e: int, d: int, k: int, curve: dict[str, int]) -> tuple[int, int]:
    n = curve["n"]
    x1, _ = mul(k, (curve["gx"], curve["gy"]), curve["a"], curve["p"])  # type: ignore[misc]
    r = (e + x1) % n
    s = pow(1 + d, -1, n) * (k - r * d) % n
    return r, s


def verify(e: int, r: int, s: int, public: tuple[int, int], curve: dict[str, int]) -> bool:
    n, a, p = curve["n"], curve["a"], curve["p"]
    if not (1 <= r < n and 1 <= s < n):
        return False
    t = (r + s) % n
    if t == 0:
        return False
    point = _add(mul(s, (curve["gx"], curve["gy"]), a, p), mul(t, public, a, p), a, p)
    return point is not None and (e + point[0]) % n == r
