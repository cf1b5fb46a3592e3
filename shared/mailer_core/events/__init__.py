"""Row 3 of the core: events go down, not up.

The jobs on the actions queue, announcing a message's events, the handover of sent, failed and
opened (with the template counters' write side), what a due timer does. The send worker, the
track route and the bounce poller publish here; the automation consumes.
"""
