"""The API's routers, one module per area; ``create_app`` (``web/app.py``) includes them.

* ``health``: ``GET /api/v1/health`` (public: no token).
* ``predict``: ``POST /api/v1/predict``.
* ``model``: the model card, its HTML report and plots, the class list.
* ``examples``: the example images and their credits.
* ``reference``: similar cases from the bundle's reference set and their thumbnails.
* ``metrics``: ``GET /api/v1/metrics`` (Prometheus) and ``ServiceMetrics``, the app's registry.

Each module holds an ``APIRouter`` named ``router`` with the ``API`` prefix. Routes get what they
share (settings, model, workers) through the dependencies in ``web/deps.py``, never from
closures; the token check (``deps.require_token``) is applied by ``create_app`` when it includes
a router, so a router module does not repeat it.
"""

API = "/api/v1"
