"""osmo-inline client: flags -> payload -> rendered, validated spec -> osmo CLI or local run."""
