"""Row 5 of the core: who a campaign writes to. Saved target lists (entities or plain
addresses, CSV import), and an audience (a selection of ids, a Kommo filter, target lists)
read page by page with its recipients' addresses and CRM data, 250 entities to a request.
"""
