"""Hermetic execution: scrubbed environments, network refusal and undeclared-I/O detection."""
