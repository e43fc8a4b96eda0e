"""The clinic HTTP API (``docs/clinic.md``): present only when storage is turned on.

``deps.py`` (the clinic, the current user, CSRF), ``bodies.py`` (request bodies),
``auth.py`` (login, sessions, API tokens, admin), ``cases.py`` (patients, lesions, visits,
diagnoses, data rights), ``figures.py`` (dashboard, confirmed-case export, similar cases),
``mount.py`` (``include_clinic``: routers + error mapping onto an app).
"""
