"""Key backends for signing hardware: PKCS#11 tokens and HSMs, SKF USB keys, SDF cipher cards.

Each module implements the key protocol of :mod:`trust.keys` for one kind of device and is
chosen by the scheme of the key URI (``pkcs11:``, ``skf:``, ``sdf:``).
"""
