"""Row 4 of the core: templates turned into emails. Jinja2's sandbox, legacy placeholders,
modifiers, the variables read from Kommo, the email's HTML, trigger link markers and their
targets, one render path for sending and preview, checks made when a source is saved.
"""
