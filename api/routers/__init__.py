"""Routers: each module builds one `Extension` from declarations (the catalogue, settings)."""
