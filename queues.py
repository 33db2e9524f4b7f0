"""Every queue Millrace runs, declared once: producers name them, workers size them."""

from __future__ import annotations

from millrace.queues import Queue

EMAILS = Queue(name="emails", concurrency=10, timeout_s=60)
WEBHOOKS = Queue(name="webhooks", concurrency=20, timeout_s=30)
DOCUMENTS = Queue(name="documents", concurrency=2, timeout_s=300)
AI = Queue(name="ai", concurrency=2, timeout_s=120)
MAINTENANCE = Queue(name="maintenance", concurrency=2, timeout_s=600)

ALL = (EMAILS, WEBHOOKS, DOCUMENTS, AI, MAINTENANCE)
