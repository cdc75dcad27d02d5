"""Many prompts: batches, the manifest on disk, stores, progress."""
