"""The hub's HTTP face: provider webhooks, the REST API, operations endpoints, demo page."""
