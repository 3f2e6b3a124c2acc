"""Operator-facing lines that the contract fixes, kept in one place so they cannot drift.

Scripts and the quick start wait for these exact words.
"""

BOOT_FINISHED = "boot init finished"
