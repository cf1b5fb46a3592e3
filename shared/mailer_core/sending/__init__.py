"""Row 8 of the core: the send worker. A batch planned, each email claimed once, rendered, sent
over SMTP, filed into Sent and recorded; the exact guarantee is in worker's docstring.
"""
