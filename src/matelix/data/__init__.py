"""The data path from a user's file to training-ready token ids (no server or Trainer dependency)."""
