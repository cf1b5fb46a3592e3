"""Row 8 of the core: mass mailings. A campaign's lifecycle and its routes, the audience
expanded package by package into one email per address on the bulk lane, its pace, its log
and report ([campaigns.md](../../../docs/campaigns.md)).
"""
