"""The Voilà server of the dashboards, hardened for anonymous viewers.

`channels` guards the kernel websocket, `kernels` bounds the kernels, `app` is Voilà with
a page handler that admits viewers within those bounds, `forking` starts kernels as forks
of a warm interpreter (`zygote`). Only the server process imports this package, and the
zygote its `zygote` module (stdlib only); the pages' kernels never import it.
"""
