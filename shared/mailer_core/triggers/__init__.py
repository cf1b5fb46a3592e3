"""Row 5 of the core: the CRM actions users wire to email events and links. The /v1/triggers and
/v1/links routes, what each trigger type does in Kommo, the loop rules, a person's click on a
trigger link.
"""
