"""Row 6 of the core: opens and clicks.

Signed tokens, links rewritten at send time, the facts the track routes record, machine
traffic told apart, the routes' rules and the counters' view. The track function imports
only routes: nothing of rendering, SMTP, IMAP or the Kommo client.
"""
