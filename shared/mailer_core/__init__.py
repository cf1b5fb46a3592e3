"""Mailer's domain core: the Lambda layer every function imports.

Handlers translate AWS events into calls of this package and its results back into
responses; every rule of the product lives here. The packages sit in rows, each importing
only from the rows below (pyproject.toml's import contracts; docs/architecture.md has a line
per package):

    row 9  web
    row 8  sending | bounces | automation | kommo_hooks
    row 7  messages
    row 6  templates | tracking
    row 5  mailboxes | files | triggers
    row 4  accounts | rendering
    row 3  kommo | events
    row 2  store
    row 1  adapters
    row 0  base

Every package's __init__ is a docstring only: importing a package loads nothing else.
Importing this package makes no network call and reads no environment variable.
"""
