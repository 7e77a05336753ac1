#!/usr/bin/env bash
# Build helm from its Go module (helm.sh/helm/v3 at $HELM_VERSION; no release downloads are
# reachable here), in a throw-away module under $CLUSTERPEDIA_CACHE/helm/<ver>/src.
#
# Output: $CLUSTERPEDIA_CACHE/helm/<ver>/bin/helm. Reused when present (idempotent); prints its path.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$HERE/versions.sh"

log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

ver="$HELM_VERSION"
dir="$CLUSTERPEDIA_CACHE/helm/$ver"
if [[ -x "$dir/bin/helm" ]]; then
  log "helm $ver cached at $dir/bin/helm"
  echo "$dir/bin/helm"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build helm" >&2; exit 1; }
log "building helm $ver (helm.sh/helm/v3) ..."
start=$SECONDS
mkdir -p "$dir/src" "$dir/bin"
(
  cd "$dir/src"
  [[ -f go.mod ]] || go mod init clusterpedia.local/helm-build >/dev/null 2>&1
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "helm.sh/helm/v3/cmd/helm"
GO
  go get "helm.sh/helm/v3@$ver" >/dev/null
  go mod tidy >/dev/null 2>&1 || true
  # As helm's Makefile: the default Kubernetes version of `helm template` is that of its client-go
  # (v0.X.Y -> 1.X); without it helm assumes 1.20 and charts with a kubeVersion refuse to render.
  local_minor="$(go list -m k8s.io/client-go | awk '{print $2}' | cut -d. -f2)"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$ver"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld="$ld -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$local_minor"
  done
  go build -trimpath -ldflags "$ld" -o "$dir/bin/helm.tmp" helm.sh/helm/v3/cmd/helm
  mv "$dir/bin/helm.tmp" "$dir/bin/helm"
)
log "helm $ver built in $((SECONDS - start))s"
echo "$dir/bin/helm"
