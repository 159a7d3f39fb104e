"""`python -m services.detector`."""

from services.detector.server import main

main()
