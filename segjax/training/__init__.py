"""Training runs: the loop and its pure steps, the train state and its checkpoints, the
optimiser, run control, metric writers and outputs, and restoring a run for inference."""
