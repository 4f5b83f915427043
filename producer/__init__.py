"""cliq-webhooks producer: the contract (events, endpoints, Redis layout) and publishing."""
