"""Row 2 of the core: DynamoDB through PynamoDB. The models (one table per aggregate, keyed by the
Kommo account), conditional writes and their reading, message states, the timeline, the rate
buckets.
"""
