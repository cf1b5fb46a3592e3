"""Row 3 of the core: Kommo's API v4. The client (the only module that talks to Kommo), its errors,
the shared rate limit per account, OAuth tokens refreshed before expiry, custom field values, an
installed account's client.
"""
