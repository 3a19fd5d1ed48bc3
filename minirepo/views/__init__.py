"""HTTP views, one blueprint per surface; `BLUEPRINTS` is what the app registers."""

from minirepo.views import (
    account,
    admin,
    api,
    files,
    jsonapi,
    ops,
    osv_api,
    projectpage,
    search,
    simple,
    tokens,
    upload,
    web,
    webpage,
)

BLUEPRINTS = (
    ops.bp,
    api.bp,
    simple.bp,
    files.bp,
    upload.bp,
    webpage.bp,
    account.bp,
    tokens.bp,
    admin.bp,
    search.bp,
    jsonapi.bp,
    osv_api.bp,
    projectpage.bp,
    web.bp,
)
