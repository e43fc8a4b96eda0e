"""The HTTP service (FastAPI): ``create_app()`` in ``dermsight.web.app``."""
