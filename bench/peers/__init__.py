"""`python -m bench.peers`: Millrace beside arq, SAQ and BullMQ (Python and Node.js) on one workload.

The driver (`__main__`) runs in the project's environment; each system's worker and producer run as
processes of their own, from that system's own environment (`bench/.venv-peers/<system>`, node_modules
for Node.js), and talk to the driver in JSON lines (`protocol`). Nothing here may import a peer's
package at the top level of a module the driver imports.
"""
