"""The fleet controller (`facegate fleet`): one edge agent per door camera, on Kubernetes.

It reads the doors file (the `facegate-doors` ConfigMap the gateways read) and keeps one
Deployment of `facegate camera` per door that names a `camera:` source, labelled by site and
door and owned by that ConfigMap; it deletes the agents of doors that are gone, writes what it
did to a status ConfigMap and to Events, and runs as several replicas of which only the holder
of a coordination.k8s.io Lease acts.

    agents.py      what the cluster should hold for a doors file (pure: no API calls)
    leadership.py  the Lease: who acts, and stopping at once when that is no longer us
    controller.py  reconcile: read, apply, prune, report; the watch loop; `run()`
"""
