"""HTTP views, one blueprint per surface; `BLUEPRINTS` is what the app registers."""

from minirepo.views import api, files, ops, simple, upload, web

BLUEPRINTS = (ops.bp, api.bp, simple.bp, files.bp, upload.bp, web.bp)
