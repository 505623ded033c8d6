"""Models, one folder each (configuration / modeling / processing)."""
