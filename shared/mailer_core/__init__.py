"""Mailer's domain core: the Lambda layer every function imports.

Handlers translate AWS events into calls of this package and its results back into
responses; every rule of the product lives here, in a module named for what it does.
Importing this package makes no network call and reads no environment variable.
"""
