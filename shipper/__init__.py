"""The shipper: one shared process that PULLs the readers' batches and bulk-indexes them into Elasticsearch.

Not started yet: until the shipping step lands every container is logged to the local store only.
"""
