"""The on-call loop: acknowledging an alert's occurrence (and what it tells the sinks)."""
