"""Clinic mode: opt-in case storage (patients -> lesions -> visits), accounts, audit, confirmed
diagnoses and the clinic's own figures. Imported only when storage is turned on
(``dermsight serve --database URL``); the stateless service never loads SQLAlchemy.

Modules: ``config`` (URL + folders), ``models`` (ORM tables), ``db`` (engine, sessions,
migrations), ``imagestore`` (content-addressed image files, local or s3://), ``accounts``
(passwords, sessions, API tokens, login rate limit), ``audit``, ``cases`` (patients, lesions,
visits, timeline), ``visits`` (assess + store one visit), ``figures`` (dashboard), ``exports``
(confirmed cases, one patient), ``rights`` (delete, retention), ``similar`` (nearest visits).
"""
