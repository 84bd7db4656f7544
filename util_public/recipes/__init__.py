"""Paper experiments as recipes (SPEC §7): plans written by `recipes/E*.sh`, their executor, and the
tidy sweep CSV collected from evaluation summaries."""
