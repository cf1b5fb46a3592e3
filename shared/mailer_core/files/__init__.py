"""Row 5 of the core: files users attach. Presigned uploads with their limits and records,
attachments checked at compose, claimed, and loaded (or downloaded by link) at send time.
"""
