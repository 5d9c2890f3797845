"""E-licenses (电子证照): license types, identifiers, holders, issuance, lifecycle, consent
grants, access receipts, the transparency log and the rendering of license documents.

Below ``etrust`` (which wires it to keys, seals and the web) and above ``signing`` and
``trust``; it owns its tables and talks SQL through SQLAlchemy.
"""
