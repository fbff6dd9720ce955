"""The Textual dashboard: a disposable client of the store (docs/dashboard.md). May import every package
but cli; screens and widgets reach the store only through backend.py."""
