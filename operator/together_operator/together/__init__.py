"""Together's GPU cluster API: wire models (and, later, the HTTP client). Knows no Kubernetes."""
