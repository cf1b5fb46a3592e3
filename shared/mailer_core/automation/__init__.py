"""Row 8 of the core: what an email's events set off. The actions function's work: not-opened
timers, the fan-out into one run per trigger, each run claimed once and carried out in Kommo,
follow-up emails.
"""
