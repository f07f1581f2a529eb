"""The main job: every stage end to end on the mock universe, and its report."""
