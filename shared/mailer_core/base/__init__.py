"""Row 0 of the core: the standard library and third-party libraries only.

Clock, errors, logs, runtime configuration, request validation, size limits.
"""
