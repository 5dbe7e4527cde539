"""The worker fleet: each Celery worker announces itself (queues, CUDA devices, memory) and what it runs."""
