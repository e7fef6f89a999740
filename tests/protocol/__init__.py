"""Protocol v1 conformance: our implementation against docs/protocol/vectors."""
