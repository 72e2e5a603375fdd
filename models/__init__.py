"""The model bundle: config + fitted state + manifest, saved and loaded with verification."""
