"""Shared by every test folder. This file puts tests/ on sys.path, so `from support import ...` works
from tests/<package>/ (pytest's default import mode)."""
