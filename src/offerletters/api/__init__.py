"""The HTTP API: FastAPI app factory, routes and answer shapes."""

from offerletters.api.app import create_app

__all__ = ["create_app"]
