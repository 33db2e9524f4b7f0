"""Every queue Millrace runs, declared once: producers name them, workers size them."""

from __future__ import annotations

from millrace.queues import Queue

# A bound on the backlog: past it a sign-up answers 503 with Retry-After rather than pile up mail for
# hours (and fill Redis); a bulk send goes through enqueue_many in batches well under it
EMAILS = Queue(name="emails", concurrency=10, timeout_s=60, max_backlog=100_000)
WEBHOOKS = Queue(name="webhooks", concurrency=20, timeout_s=30)
NOTIFICATIONS = Queue(name="notifications", concurrency=10, timeout_s=30)
INTEGRATIONS = Queue(name="integrations", concurrency=5, timeout_s=30)
MAINTENANCE = Queue(name="maintenance", concurrency=2, timeout_s=600)
# Imports and exports: long, heavy on PostgreSQL and storage, never in a hurry
BULK = Queue(name="bulk", concurrency=4, timeout_s=900)
# Documents rendered by LibreOffice: about 200 MB and a core each, so two at a time per worker process
DOCUMENTS = Queue(name="documents", concurrency=2, timeout_s=300)
# Calls to an AI provider: slow and rate-limited; the cap on calls in flight is the job's (jobs/documents.py)
AI = Queue(name="ai", concurrency=4, timeout_s=600)

# A queue is added here when its first job is: every queue gets a worker line in the Procfile.
ALL = (EMAILS, WEBHOOKS, NOTIFICATIONS, INTEGRATIONS, MAINTENANCE, BULK, DOCUMENTS, AI)
