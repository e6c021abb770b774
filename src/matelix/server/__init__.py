"""The lab's HTTP server: FastAPI app factory, auth, error shape, one router per resource."""
