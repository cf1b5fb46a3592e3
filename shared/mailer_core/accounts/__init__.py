"""Row 4 of the core: who calls and whether they may. The widget's token, the account's status and
settings checked for every call (with a short cache), the settings' value and routes, the
digital pipeline secret.
"""
