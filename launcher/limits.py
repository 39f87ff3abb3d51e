"""Request body sizes that the front door (launcher.server, daphne) and the application
(jobs.middleware.RequestBodyLimit) must agree on.

Here, in the launcher, because the server runs before Django is set up and imports no
Django app; the middleware imports it from here.
"""

from __future__ import annotations

# Room for multipart boundaries and the other form fields around the file itself: a body
# may be this much over COREBOARD_UPLOAD_MAX_BYTES.
ENVELOPE_BYTES = 1024 * 1024
