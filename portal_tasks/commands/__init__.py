"""The commands besides `up`, one module each (status, overview, check, ports, scale, tls, down, browse,
forward): each has ``run`` (and, where it changes something, ``explain``). `up` uses forward and browse too."""
