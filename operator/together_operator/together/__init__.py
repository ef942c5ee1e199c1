"""Together's GPU cluster API: the HTTP client, its errors, wire models and operation table.

Knows nothing of Kubernetes; the controller and the simulator build on it.
"""
