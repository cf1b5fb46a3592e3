"""Row 9 of the core: the HTTP edge shared by the api, webhook and track handlers. CORS for Kommo's
origins, the widget's token checked for /v1, JSON errors, body parsing, and the OpenAPI document
served at /openapi.json.
"""
