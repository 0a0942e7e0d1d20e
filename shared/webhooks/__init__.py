"""Webhooks: signing deliveries the Standard Webhooks way, and checking where they go."""
