"""From experiment logs to responses: read logs, simulate them, estimate with uncertainty."""
