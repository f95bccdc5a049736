"""The small program portal runs on the host (stdlib only, shipped as a zipapp to ~/.portal/bin).

Each module adds verbs; ``main`` dispatches ``VERB JSON`` and prints one JSON reply line.
"""
