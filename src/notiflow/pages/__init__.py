"""notiflow's own web pages: server-rendered HTML shells, their scripts, styles and messages.

``api.router`` serves the pages, ``api.static_files()`` the assets under ``/static``;
``main/app.py`` mounts both. The pages hold no data of their own: their scripts sign in and call
the public ``/api/v1`` with the user's bearer token, like any other front end (docs/pages.md).
"""
