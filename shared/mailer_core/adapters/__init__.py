"""Row 1 of the core: one module per external system (AWS clients, S3, SQS, EventBridge Scheduler,
KMS, SMTP, IMAP, web downloads) and the MIME format. Nothing else in the core talks to these
systems.
"""
