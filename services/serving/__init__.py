"""The gRPC query service on Ray Serve: wire (raw request bytes), validation, request handlers,
health, deployment, app; the tensor codec and stubs come from spd_client."""
