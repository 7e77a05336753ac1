#!/usr/bin/env bash
# Build the control-plane binaries the harness and the demo run: etcd, kube-apiserver and
# kube-controller-manager, from Go modules (no release downloads are reachable here).
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod replaces every staging
# module (k8s.io/api, k8s.io/client-go, ...) with ./staging/src/... . A consumer has to replace each
# of them with the published v0.X.Y tag instead; the list is generated from that version's own
# go.mod so it is always complete.
#
# Output: $CACHE/k8s/vX.Y.Z/bin/{kube-apiserver,kube-controller-manager} and $CACHE/etcd/vA.B.C/bin/etcd.
# Reused when present (idempotent).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$HERE/versions.sh"

log() { printf '[build-k8s %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

build_etcd() {
  local ver="$ETCD_VERSION" dir="$CLUSTERPEDIA_CACHE/etcd/$ETCD_VERSION"
  if [[ -x "$dir/bin/etcd" ]]; then log "etcd $ver cached at $dir/bin/etcd"; return; fi
  log "building etcd $ver (go.etcd.io/etcd/server/v3) ..."
  local start=$SECONDS
  mkdir -p "$dir/src" "$dir/bin"
  ( cd "$dir/src"
    [[ -f go.mod ]] || go mod init clusterpedia.local/etcd-build >/dev/null 2>&1
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    go get "go.etcd.io/etcd/server/v3@$ver" >/dev/null
    go build -trimpath -ldflags "-s -w" -o "$dir/bin/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$dir/bin/etcd.tmp" "$dir/bin/etcd" )
  log "etcd $ver built in $((SECONDS - start))s"
}

build_k8s() {
  local ver="$1" dir="$CLUSTERPEDIA_CACHE/k8s/$1"
  if [[ -x "$dir/bin/kube-apiserver" && -x "$dir/bin/kube-controller-manager" ]]; then
    log "kubernetes $ver cached at $dir/bin"; return
  fi
  log "building kube-apiserver and kube-controller-manager $ver (k8s.io/kubernetes) ..."
  local start=$SECONDS
  mkdir -p "$dir/src" "$dir/bin"
  local staging="v0.${ver#v1.}"
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  ( cd "$dir/src"
    rm -f go.mod go.sum
    go mod init clusterpedia.local/k8s-build >/dev/null 2>&1
    # one replace per staging module, taken from the release's own go.mod
    python3 - "$gomod" "$staging" >> go.mod <<'PY'
import re, sys
text = open(sys.argv[1]).read()
mods = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", text, re.M)))
if not mods:
    sys.exit("no staging replaces found in " + sys.argv[1])
print("replace (")
for m in mods:
    print(f"\t{m} => {m} {sys.argv[2]}")
print(")")
PY
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
    go get "k8s.io/kubernetes@$ver" >/dev/null
    go mod tidy >/dev/null 2>&1 || true
    local minor="${ver#v1.}"; minor="${minor%%.*}"
    local pkg=k8s.io/component-base/version
    local ld="-s -w -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$ver -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    for cmd in kube-apiserver kube-controller-manager; do
      log "  go build $cmd $ver"
      go build -trimpath -ldflags "$ld" -o "$dir/bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$dir/bin/$cmd.tmp" "$dir/bin/$cmd"
    done )
  log "kubernetes $ver built in $((SECONDS - start))s"
}

main() {
  command -v go >/dev/null || { echo "go is required to build the control planes" >&2; exit 1; }
  build_etcd
  local v
  for v in ${1:-$K8S_VERSIONS}; do build_k8s "$v"; done
}

main "$@"
