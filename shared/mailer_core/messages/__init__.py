"""Row 7 of the core: messages, the rules behind /v1/messages.

Compose (and compose from a template), read and list, cancel and resend, the view that
combines a message's record with its counters, timeline and reports, the preview, and the
suppression list every send checks.
"""
