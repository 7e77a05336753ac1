"""The kube-state-metrics tier: kube-state-metrics series of every cluster, served from the store."""
