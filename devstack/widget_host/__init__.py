"""A Kommo-like page that hosts the built widget (build/widget/widget.zip) against the local stack.

The server (widget_host/server.py) serves the page, the widget's files from the archive, the
page's vendored libraries (RequireJS, jQuery, underscore, moment, twig.js, installed from the
npm registry by `make host-vendor` into widget_host/node_modules, git-ignored) and a few
local-only endpoints (a widget token for the demo user, the pipeline post). The page's own
script (widget_host/static/host.js) plays Kommo's widget platform as its documentation
describes it; static/notes.html says what is imitated and what is not known. docs/widget.md.
"""
