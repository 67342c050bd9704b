"""The gRPC query service on Ray Serve: codec, validation, request handlers, deployment, app."""
