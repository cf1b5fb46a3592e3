"""Row 8 of the core: Kommo's webhooks and what they start. The install redirect and code exchange,
the uninstall hook (and an operator's switch-off), the digital pipeline action and Salesbot
steps: their bodies, their jobs, and the compose each job becomes.
"""
