"""The layer catalogue, the demo city, and data import/export."""
