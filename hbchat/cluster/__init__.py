"""
Cluster mode (``twistd hbchat --redis URL``): one chat across many processes and machines,
kept in Redis (docs/cluster.md).
"""
