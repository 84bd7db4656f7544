"""Training entry point package (the logic lives in util_public.training)."""
