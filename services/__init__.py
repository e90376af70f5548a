"""Units of work per feature: rules, queries, rendering and the outbox in one transaction."""
