"""Batch jobs that run beside the service, sharing its store."""
