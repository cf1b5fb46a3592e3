"""Row 8 of the core: delivery reports read back from the mailboxes. Recognising a report and
matching it to the message (reports), polling each green mailbox's inbox over IMAP (poller).
"""
