"""Verification of licenses by QR code: the license code checked offline against the signed
trust list (and the status list when at hand), online against the registry; the window and
citizen pages build on it."""
