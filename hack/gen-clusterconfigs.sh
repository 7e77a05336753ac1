#!/usr/bin/env bash
# Adds kubeconfig cluster entries that search through Clusterpedia (the seed's `make gen-clusterconfigs`):
#   clusterpedia  -> <current server>/apis/clusterpedia.io/v1beta1/resources          (all clusters)
#   <name>        -> <current server>/apis/clusterpedia.io/v1beta1/resources/clusters/<name>
#                    for every PediaCluster of the current cluster (the host).
# They reuse the current cluster's TLS settings (CA, server name, insecure flag), so
# `kubectl --cluster clusterpedia get deployments -A` works with the current user's credentials.
# Honours KUBECONFIG; KUBECTL picks the kubectl binary (default: kubectl on PATH).
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
RESOURCES_PATH=/apis/clusterpedia.io/v1beta1/resources

context=$("$KUBECTL" config current-context)
cluster=$("$KUBECTL" config view -o jsonpath="{.contexts[?(@.name==\"$context\")].context.cluster}")
if [ -z "$cluster" ]; then
    echo "the current context \"$context\" names no cluster" >&2
    exit 1
fi

field() {
    "$KUBECTL" config view --raw -o jsonpath="{.clusters[?(@.name==\"$cluster\")].cluster.$1}"
}
server=$(field server)
tls_server_name=$(field tls-server-name)
insecure=$(field insecure-skip-tls-verify)
ca_file=$(field certificate-authority)
ca_data=$(field certificate-authority-data)
server=${server%/}

echo "Current Context: $context"
echo "Current Cluster: $cluster"
echo "        Server: $server"
echo "        TLS Server Name: $tls_server_name"
echo "        Insecure Skip TLS Verify: $insecure"
echo "        Certificate Authority: $ca_file"
if [ -n "$ca_data" ]; then
    echo "        Certificate Authority Data: ***"
else
    echo "        Certificate Authority Data: "
fi

set_cluster() {
    local name=$1 url=$2
    local args=(config set-cluster "$name" "--server=$url")
    [ -n "$tls_server_name" ] && args+=("--tls-server-name=$tls_server_name")
    [ "$insecure" = "true" ] && args+=("--insecure-skip-tls-verify=true")
    [ -n "$ca_file" ] && args+=("--certificate-authority=$ca_file")
    "$KUBECTL" "${args[@]}"
    if [ -n "$ca_data" ]; then
        "$KUBECTL" config set "clusters.$name.certificate-authority-data" "$ca_data" >/dev/null
    fi
}

set_cluster clusterpedia "$server$RESOURCES_PATH"

if ! names=$("$KUBECTL" get pediaclusters.clusters.clusterpedia.io -o jsonpath='{.items[*].metadata.name}' 2>/dev/null); then
    echo "warning: cannot list PediaClusters in cluster \"$cluster\"; only \"clusterpedia\" was set" >&2
    exit 0
fi
for name in $names; do
    set_cluster "$name" "$server$RESOURCES_PATH/clusters/$name"
done
