"""One lock around the kubernetes client's kubeconfig loader, for every tier.

The loader writes inline credentials (``client-certificate-data``, ``client-key-data``,
``certificate-authority-data``) to temporary files that it caches by content in a module-level
dict, and it records a file's name there *before* writing the bytes. Two threads loading at once
(``clusterpedia all-in-one``: the synchro's host client and the API tier's; the synchro reading a
PediaCluster's ``spec.kubeconfig``) can therefore be handed a file that is still empty: the demo
once failed at start with "certData and keyData must be set together". Every use of the loader in
this project holds :data:`LOADER_LOCK`; once a load returns under it, the files it names are
complete, so reading them may happen outside.
"""

from __future__ import annotations

import threading

LOADER_LOCK = threading.Lock()
"""Held around ``load_kube_config``, ``load_incluster_config`` and ``KubeConfigLoader.load_and_set``."""
