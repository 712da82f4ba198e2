"""What the end-to-end tests (and `bench/`) use to start and talk to real processes: Redis, Celery
workers, the server (`processes`), raw JSON-RPC over HTTP (`rawclient`), and waits on Redis
state (`helpers`). The unit tests under `tests/unit/` use none of it."""
