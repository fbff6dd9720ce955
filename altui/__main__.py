"""`python -m altui`: the altui command."""

from altui.cli import main

main()
