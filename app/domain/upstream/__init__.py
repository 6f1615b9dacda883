"""The upstream index: which names may go there (``policy``), and the pull-through cache of
its pages (``pages``, ``index``) and files (``files``), fetched over HTTP (``client``)."""
