"""`python -m services.embedder`."""

from services.embedder.server import main

main()
