"""The local stack's tooling: what `ferryman stack up|status|down` runs on one machine.

Not part of what ships to users' release runs: flows/ and tasks/ never import it.
"""
