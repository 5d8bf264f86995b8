"""An app with a model whose files are served through the gateway."""
