"""Watching what serves: live accuracy from late labels, abnormal outputs, input drift, and alerts
that notify or roll back. The serving runtime's side is serving/watch.py."""
