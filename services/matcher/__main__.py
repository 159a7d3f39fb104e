"""`python -m services.matcher`."""

from services.matcher.server import main

main()
