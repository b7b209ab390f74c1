"""The shipper: one shared process that fetches each shipping container's stored records from the local store (a
DEALER to its fetch ROUTER), builds ECS documents and bulk-indexes them into Elasticsearch, then acknowledges what
Elasticsearch accepted.
"""
