"""The Voilà server of the dashboards, hardened for anonymous viewers.

`channels` guards the kernel websocket, `kernels` bounds the kernels, `app` is Voilà with
a page handler that admits viewers within those bounds. Only the server process imports
this package; the pages' kernels never do.
"""
