"""Rate-distortion benchmarking: metrics, classical baselines, BD-rate and plots, `lic eval`."""
