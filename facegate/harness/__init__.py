"""Local processes for tests, benchmarks and the demo (the services on free ports, a Milvus server).

Not shipped in the production image (see .dockerignore).
"""
