"""The operator console (``neuroreflex console``): set up, preflight, follow, control and review a session.

Off the hot path by construction: the console is its own process. It starts a session as a
``neuroreflex run`` child (or attaches to one already running), follows it over the session's LSL
outlets and its input streams, and acts on it only through the control channel
(controller/operator/control_client.py), the same operator-act code the terminal keys use. Killing
the console leaves the session, its XDF and its journal untouched. Needs the ``gui`` extra.
"""
