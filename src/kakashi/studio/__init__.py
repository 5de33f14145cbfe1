"""Kakashi studio: a local web page and JSON API where a song goes in and a dance comes out.

- :mod:`kakashi.studio.catalog`: the checkpoints served and their last evaluation;
- :mod:`kakashi.studio.uploads`: song uploads (size and length limits, content checks,
  storage under the content hash);
- :mod:`kakashi.studio.jobs`: the worker pool, the progress of each job and the result cache;
- :mod:`kakashi.studio.app`: the FastAPI application (page, API, server-sent events) and
  its guard (only the studio's own page may drive it);
- :mod:`kakashi.studio.server`: uvicorn's configuration (header timeout, no proxy headers).

The page itself is ``kakashi/assets/studio.html`` (no CDN: the viewer it embeds is the
self-contained page of :mod:`kakashi.outputs.viewer`). ``kakashi studio`` starts it.
"""
