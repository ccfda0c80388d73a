"""HTML reports over run directories (they read files only, never the trainer)."""
