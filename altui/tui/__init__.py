"""The Textual dashboard: a disposable client of the store (see docs/dashboard.md)."""
