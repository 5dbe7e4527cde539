"""Webhooks: subscriptions to release events, HMAC-signed deliveries retried from the database."""
