"""Small shared helpers: config validation, checkpoints, atomic writes."""
