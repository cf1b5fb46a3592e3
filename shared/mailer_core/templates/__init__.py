"""Row 6 of the core: saved emails with variables. The /v1/templates routes (ownership, checks on
save, attachments) and the view of a template's counters.
"""
