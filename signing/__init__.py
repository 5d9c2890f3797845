"""Signature formats: GB/T 38540 seals and SES signatures, OFD, PAdES, CMS, signed data, and
the reports every verification returns."""
