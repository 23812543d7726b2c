"""The web app and the REST API: Starlette on uvicorn, served by the daemon next to /health."""
