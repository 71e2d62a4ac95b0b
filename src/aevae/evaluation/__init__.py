"""Evaluation: metrics, likelihood, anomaly detection, probes and figures."""
