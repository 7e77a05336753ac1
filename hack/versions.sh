# Pinned versions of everything the harness builds; sourced by hack/*.sh.
# shellcheck shell=bash
export K8S_VERSION_CURRENT="${K8S_VERSION_CURRENT:-v1.37.2}"
export K8S_VERSION_OLDER="${K8S_VERSION_OLDER:-v1.34.4}"
export K8S_VERSIONS="$K8S_VERSION_CURRENT $K8S_VERSION_OLDER"
export ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
export HELM_VERSION="${HELM_VERSION:-v3.19.5}"
# Built binaries live outside the work tree so every clone on this machine reuses them.
export CLUSTERPEDIA_CACHE="${CLUSTERPEDIA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clusterpedia-py}"
