"""Images: lay out the root file system, pack it read-only, record it in the store."""
