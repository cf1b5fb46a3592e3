"""Row 5 of the core: the users' SMTP mailboxes and their IMAP side. Reaching a mailbox
(connection), one default per user, provider presets, the check and its traffic light, the Sent
folder, the /v1/mailboxes routes (api).
"""
