"""hyperscaler: the CLI and host probing of the hyperscaler Pulumi project."""
