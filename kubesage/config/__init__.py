"""Config files: the strict YAML reader every config uses (``reader``) and this machine's own
config, ``config/local.yaml`` (``local``: run store, data mounts, image tags, trackers). Each
target's own config lives in its package."""
